//! Retries of RPC calls with exponential backoff. A transport failure
//! (connection refused, reset, timeout, HTTP 429/503) is retried; an answer
//! from the node (a revert, an invalid parameter) is returned at once, since
//! asking again gets the same answer.

use std::future::Future;
use std::time::Duration;

use alloy::transports::{RpcError, TransportErrorKind};

/// How often and how patiently a failing RPC call is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles after each further one.
    pub initial_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// The number of attempts in all (≥ 1) before the error is returned.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 250 ms doubling to at most 8 s, 8 attempts: about 30 s of patience in
    /// all, enough to ride out a node restart or a load balancer's failover
    /// without holding an epoch's anchor back much longer than one block time.
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after `attempt` failures (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial_delay.saturating_mul(1u32 << doublings).min(self.max_delay)
    }
}

/// JSON-RPC error code some providers use for "rate limited, retry later"
/// (EIP-1474 "limit exceeded").
const LIMIT_EXCEEDED: i64 = -32005;
/// JSON-RPC error code of HTTP-style "too many requests" answers of some providers.
const TOO_MANY_REQUESTS: i64 = 429;

/// Whether asking again may succeed: the request did not reach the node or
/// the node asked us to slow down.
pub fn is_retryable(error: &alloy::contract::Error) -> bool {
    match error {
        alloy::contract::Error::TransportError(rpc) => is_retryable_rpc(rpc),
        _ => false,
    }
}

/// [`is_retryable`] for a bare RPC error.
pub fn is_retryable_rpc(error: &RpcError<TransportErrorKind>) -> bool {
    match error {
        RpcError::Transport(kind) => !kind.is_non_retryable(),
        RpcError::NullResp => true,
        RpcError::ErrorResp(payload) => matches!(payload.code, LIMIT_EXCEEDED | TOO_MANY_REQUESTS),
        _ => false,
    }
}

/// Runs `call` until it succeeds, fails with a non-retryable error, or
/// `policy.max_attempts` attempts failed; returns the last error and the
/// number of attempts made.
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    operation: &'static str,
    mut call: F,
) -> Result<T, (alloy::contract::Error, u32)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, alloy::contract::Error>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if is_retryable(&error) && attempt < policy.max_attempts.max(1) => {
                let delay = policy.delay(attempt);
                tracing::warn!(operation, attempt, ?delay, %error, "RPC call failed, retrying");
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err((error, attempt)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            max_attempts: 10,
        };
        let delays: Vec<u128> = (1..=5).map(|a| policy.delay(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        assert_eq!(policy.delay(u32::MAX), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn transport_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = retry(&RetryPolicy::default(), "test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(alloy::contract::Error::TransportError(TransportErrorKind::backend_gone()))
            } else {
                Ok(7)
            }
        })
        .await;
        assert!(matches!(result, Ok(7)));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_max_attempts() {
        let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        let result: Result<(), _> = retry(&policy, "test", || async {
            Err(alloy::contract::Error::TransportError(TransportErrorKind::backend_gone()))
        })
        .await;
        assert!(matches!(result, Err((_, 3))));
    }

    #[tokio::test(start_paused = true)]
    async fn non_transport_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(&RetryPolicy::default(), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(alloy::contract::Error::ContractNotDeployed)
        })
        .await;
        assert!(matches!(result, Err((alloy::contract::Error::ContractNotDeployed, 1))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
