//! Gossip topics: one per region, one global.
//!
//! Topic strings (gossipsub "identity" topics: the hash is the string itself):
//!
//! ```text
//! /meshd/<network>/region/<h3 index, 15 lowercase hex digits>/1
//! /meshd/<network>/global/1
//! ```
//!
//! Reports of a region travel on its region topic, so a gateway's gossip load
//! grows with its region, not with the network. Summaries, certificates and
//! anchors travel on the global topic.

use std::fmt;

use libp2p::gossipsub::{IdentTopic, TopicHash};
use meshd_protocol::geo::Region;

/// A topic a node can subscribe and publish to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// The reports of one region.
    Region(Region),
    /// Summaries, certificates and anchors of every region.
    Global,
}

impl Topic {
    /// The topic's wire string in `network`.
    pub fn name(&self, network: &str) -> String {
        match self {
            Topic::Region(region) => format!("/meshd/{network}/region/{:015x}/1", region.0),
            Topic::Global => format!("/meshd/{network}/global/1"),
        }
    }

    /// The gossipsub topic in `network`.
    pub fn ident(&self, network: &str) -> IdentTopic {
        IdentTopic::new(self.name(network))
    }

    /// The topic a wire hash names in `network`, if it is one of ours.
    pub fn parse(network: &str, hash: &TopicHash) -> Option<Topic> {
        let rest = hash.as_str().strip_prefix("/meshd/")?.strip_prefix(network)?.strip_prefix('/')?;
        if rest == "global/1" {
            return Some(Topic::Global);
        }
        let hex = rest.strip_prefix("region/")?.strip_suffix("/1")?;
        if hex.len() != 15 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(|cell| Topic::Region(Region(cell)))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Region(region) => write!(f, "region {:015x}", region.0),
            Topic::Global => f.write_str("global"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_round_trip() {
        // An H3 resolution-5 cell (San Francisco).
        let region = Topic::Region(Region(0x0852_8308_3fff_ffff));
        assert_eq!(region.name("main"), "/meshd/main/region/85283083fffffff/1");
        for topic in [region, Topic::Global] {
            assert_eq!(Topic::parse("main", &topic.ident("main").hash()), Some(topic));
        }
    }

    #[test]
    fn foreign_and_malformed_topics_are_not_ours() {
        let global = Topic::Global.ident("main").hash();
        assert_eq!(Topic::parse("test", &global), None);
        for bad in ["/meshd/main/region/85283083FFFFFFF/1", "/meshd/main/region/1/1", "/meshd/main/global/2"]
        {
            assert_eq!(Topic::parse("main", &IdentTopic::new(bad).hash()), None);
        }
    }
}
