//! The hot check: `TokenCache::decide`, from `Authorization` header value to verdict, with
//! 1,000, 100,000 and 1,000,000 tokens in the cache.
//!
//! Run: `cargo bench --bench hot_check`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use tollgate::cache::TokenCache;
use tollgate::token::{TokenId, TokenRecord, TokenSecret, TokenSpec};

fn record(secret: &TokenSecret, i: usize) -> TokenRecord {
    TokenRecord::issue(
        TokenId::generate(),
        TokenSpec::agent(&format!("agent-{i}")),
        secret,
        0,
    )
}

fn headers(value: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(
        AUTHORIZATION,
        HeaderValue::from_str(value).expect("valid header"),
    );
    map
}

fn hot_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    for size in [1_000usize, 100_000, 1_000_000] {
        let cache = TokenCache::with_capacity(size);
        let mut active = None;
        let mut revoked = None;
        for i in 0..size {
            let secret = TokenSecret::generate();
            let mut r = record(&secret, i);
            if i == 1 {
                r.revoke(1, None);
                revoked = Some(secret.clone());
            } else if i == 0 {
                active = Some(secret.clone());
            }
            cache.upsert(&r);
        }
        let now = tollgate::time::now();
        let cases = [
            (
                "active",
                format!("Bearer {}", active.expect("set").expose()),
            ),
            (
                "unknown",
                format!("Bearer {}", TokenSecret::generate().expose()),
            ),
            (
                "revoked",
                format!("Bearer {}", revoked.expect("set").expose()),
            ),
            ("malformed", "Bearer tc-apiv1_not-a-token".to_owned()),
        ];
        for (case, value) in cases {
            let map = headers(&value);
            group.bench_with_input(BenchmarkId::new(case, size), &map, |b, map| {
                b.iter(|| black_box(cache.decide(map.get_all(AUTHORIZATION), now)))
            });
        }
    }
    group.finish();
}

/// The parts of the check, as a baseline: the format check plus SHA-256 alone.
fn digest_only(c: &mut Criterion) {
    let secret = TokenSecret::generate();
    c.bench_function("digest_token_bytes", |b| {
        b.iter(|| {
            black_box(tollgate::token::digest_token_bytes(black_box(
                secret.expose().as_bytes(),
            )))
        })
    });
}

criterion_group!(benches, digest_only, hot_check);
criterion_main!(benches);
