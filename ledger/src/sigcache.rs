//! Signature checks ahead of validation, and a cache of their verdicts (as Bitcoin Core's
//! signature cache does between mempool and block validation).
//!
//! A verdict is a pure function of the 160-byte request (digest, r, s, Qx, Qy), so a cached
//! verdict is exactly what checking again would give. The node records the verdict of every
//! client signature it checks at submission, and queues the endorsement checks of each
//! transaction it sends to ordering; a background task runs them in batches through the crypto
//! service (one rayon pass on the CPU, one command on a BPU) while earlier blocks commit.
//! Validation then takes cached verdicts and checks only what is missing, so each signature is
//! verified once, and most of the work is off the block's critical path.

use bpu_runtime::{CryptoService, VerifyRequest};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most verdicts kept; beyond it the cache is cleared (entries of transactions that never
/// reach a block would otherwise accumulate).
const MAX_ENTRIES: usize = 1 << 18;
/// Most requests per background batch.
const BATCH: usize = 2048;

enum Job {
    Check(Vec<VerifyRequest>),
    /// Answered once every job queued before it is done.
    Barrier(oneshot::Sender<()>),
}

/// The cache and its background verifier.
pub struct SigCache {
    crypto: CryptoService,
    verdicts: Mutex<HashMap<VerifyRequest, bool>>,
    jobs: mpsc::UnboundedSender<Job>,
    /// Verifications performed here (background and on demand).
    verified: AtomicU64,
}

impl SigCache {
    /// Starts the background verifier on the current tokio runtime.
    pub fn start(crypto: CryptoService) -> Arc<SigCache> {
        let (tx, rx) = mpsc::unbounded_channel();
        let cache = Arc::new(SigCache {
            crypto,
            verdicts: Mutex::new(HashMap::new()),
            jobs: tx,
            verified: AtomicU64::new(0),
        });
        tokio::spawn(background(Arc::downgrade(&cache), rx));
        cache
    }

    /// Verifications performed by the cache (background and on demand).
    pub fn verified(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }

    /// Records a verdict obtained elsewhere (the client signature checked at submission).
    pub fn record(&self, req: VerifyRequest, valid: bool) {
        let mut v = self.verdicts.lock();
        if v.len() >= MAX_ENTRIES {
            v.clear();
        }
        v.insert(req, valid);
    }

    /// Queues checks to run in the background.
    pub fn prefetch(&self, mut reqs: Vec<VerifyRequest>) {
        {
            let v = self.verdicts.lock();
            reqs.retain(|r| !v.contains_key(r));
        }
        if !reqs.is_empty() {
            let _ = self.jobs.send(Job::Check(reqs));
        }
    }

    /// Verdicts of `reqs`, in order: cached ones are taken out of the cache, the rest are
    /// verified now in one batch. Waits for queued background checks first, so that a check
    /// already on its way is not done twice.
    pub async fn verdicts(&self, reqs: &[VerifyRequest]) -> bpu_runtime::Result<Vec<bool>> {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
        let mut out = vec![false; reqs.len()];
        let mut missing = Vec::new();
        {
            let mut v = self.verdicts.lock();
            for (i, r) in reqs.iter().enumerate() {
                match v.remove(r) {
                    Some(ok) => out[i] = ok,
                    None => missing.push(i),
                }
            }
        }
        if !missing.is_empty() {
            let batch: Vec<VerifyRequest> = missing.iter().map(|&i| reqs[i]).collect();
            let got = self.crypto.verify_batch(&batch).await?;
            self.verified
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for (&i, ok) in missing.iter().zip(got) {
                out[i] = ok;
            }
        }
        Ok(out)
    }
}

async fn background(cache: std::sync::Weak<SigCache>, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut reqs = Vec::new();
        let mut barriers = Vec::new();
        let mut job = Some(first);
        while let Some(j) = job.take() {
            match j {
                Job::Check(r) => reqs.extend(r),
                Job::Barrier(b) => barriers.push(b),
            }
            if reqs.len() < BATCH {
                job = rx.try_recv().ok();
            }
        }
        let Some(cache) = cache.upgrade() else { return };
        if !reqs.is_empty() {
            match cache.crypto.verify_batch(&reqs).await {
                Ok(verdicts) => {
                    cache
                        .verified
                        .fetch_add(reqs.len() as u64, Ordering::Relaxed);
                    let mut v = cache.verdicts.lock();
                    if v.len() + reqs.len() > MAX_ENTRIES {
                        v.clear();
                    }
                    v.extend(reqs.into_iter().zip(verdicts));
                }
                // Validation will check these itself.
                Err(e) => tracing::warn!("background signature checks failed: {e}"),
            }
        }
        for b in barriers {
            let _ = b.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpu_runtime::SigningKey;

    fn request(key: &SigningKey, n: u8, valid: bool) -> VerifyRequest {
        let digest = [n; 32];
        let sig = key.sign_digest(&digest).expect("sign");
        let mut r = VerifyRequest::new(&key.public_key(), &sig, digest);
        if !valid {
            r.digest[0] ^= 1;
        }
        r
    }

    #[tokio::test]
    async fn verdicts_come_from_the_cache_or_are_checked_once() {
        let key = SigningKey::generate().expect("key");
        let cache = SigCache::start(CryptoService::cpu());
        let (good, bad, prefetched_bad, prefetched_good) = (
            request(&key, 1, true),
            request(&key, 2, false),
            request(&key, 3, false),
            request(&key, 4, true),
        );
        // A recorded verdict is returned as recorded, without checking (here deliberately
        // wrong, to tell it apart from a fresh check).
        cache.record(bad, true);
        cache.prefetch(vec![prefetched_bad, prefetched_good]);
        let v = cache
            .verdicts(&[good, bad, prefetched_bad, prefetched_good])
            .await
            .expect("verdicts");
        assert_eq!(v, vec![true, true, false, true]);
        // Two prefetched in the background, one missing checked on demand.
        assert_eq!(cache.verified(), 3);
        // Verdicts are taken out: asking again checks afresh.
        let v = cache
            .verdicts(&[bad, prefetched_good])
            .await
            .expect("verdicts");
        assert_eq!(v, vec![false, true]);
        assert_eq!(cache.verified(), 5);
    }
}
