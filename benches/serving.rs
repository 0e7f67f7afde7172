//! The serving process, measured from outside: resident memory and start-up time by store size,
//! revocation under load, the memory of idle keep-alive connections, and how fast a process
//! sharing the store applies another's changes.
//!
//! Run: `cargo bench --bench serving` (everything), or name parts:
//! `cargo bench --bench serving -- memory startup revocation commit idle peers`.
//! `TOLLGATE=path/to/tollgate` measures another build of the server in the parts that start one
//! (all but `commit`), to compare two versions; the store is seeded by this tree's library, so
//! the other build must read its schema.
//!
//! Each part but `commit` starts the real `tollgate` binary (this tree's release build, or
//! `TOLLGATE`'s) on a store seeded through the library, with a small upstream in this process;
//! `commit` calls the store in this process, then writes a plain file the way a commit writes
//! the store, to tell the disk's share of a commit's time from the rest. Figures are printed, never asserted, except
//! the one promise that is not a speed: no request sent after a revoke's reply is accepted.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tollgate::store::Store;
use tollgate::token::{TokenId, TokenRecord, TokenSecret, TokenSpec};

/// The build measured: this tree's, or another one's (`TOLLGATE=path/to/tollgate`) to compare.
fn binary() -> String {
    std::env::var("TOLLGATE")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_tollgate").to_owned())
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runs = |part: &str| wanted.is_empty() || wanted.iter().any(|w| w == part);
    // `seed N DIR`: only write a store of N tokens into DIR (for profiling a start by hand).
    if let [seed, n, dir] = &wanted[..]
        && seed == "seed"
    {
        let seeded = Seeded::new(n.parse().expect("a token count"), 0);
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::copy(
            seeded.dir.path().join("tollgate.redb"),
            Path::new(dir).join("tollgate.redb"),
        )
        .expect("copy the store");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let upstream = runtime.block_on(start_upstream());
    println!("tollgate serving benchmarks ({} cores)", cores());
    if runs("memory") || runs("startup") {
        memory_and_startup(upstream);
    }
    if runs("revocation") {
        runtime.block_on(revocation_under_load(upstream));
    }
    if runs("commit") {
        // On a thread of its own: it asks for the admin API's threads' priority, which must not
        // stay with the parts after it.
        let runtime = runtime.handle().clone();
        std::thread::spawn(move || commit_latency(&runtime, upstream))
            .join()
            .expect("the commit part");
    }
    if runs("idle") {
        idle_connections(upstream);
    }
    if runs("peers") {
        runtime.block_on(peers_on_one_store(upstream));
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ---- the parts ----

fn memory_and_startup(upstream: SocketAddr) {
    println!();
    println!(
        "| tokens in the store | start to /readyz 200 | resident memory when ready | per token |"
    );
    println!("|---|---|---|---|");
    let mut baseline = None;
    for size in [0usize, 100_000, 1_000_000] {
        let seeded = Seeded::new(size, 0);
        // The first start after seeding pays for reading the file from disk into the page cache;
        // the figure is the second start, as after a restart.
        drop(seeded.start(upstream, false));
        let started = Instant::now();
        let server = seeded.start(upstream, false);
        let ready = started.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let rss = server.rss_kib();
        let base = *baseline.get_or_insert(rss);
        let per_token = if size == 0 {
            "-".to_string()
        } else {
            format!("{:.0} B", (rss - base) as f64 * 1024.0 / size as f64)
        };
        println!(
            "| {size} | {:.0} ms | {:.1} MiB | {per_token} |",
            ready.as_secs_f64() * 1000.0,
            rss as f64 / 1024.0
        );
    }
}

async fn revocation_under_load(upstream: SocketAddr) {
    const SIZE: usize = 1_000_000;
    const CONNECTIONS: usize = 64;
    const SINGLE_REVOKES: usize = 1_000;
    const BULK: usize = 10_000;
    // known[0] is revoked under load, known[1] keeps the load on afterwards, then the tokens
    // for the single revokes (two sets: see the operators below), then those for the bulk
    // revoke.
    let seeded = tokio::task::spawn_blocking(|| Seeded::new(SIZE, 2 + 2 * SINGLE_REVOKES + BULK))
        .await
        .expect("seed");
    let server = seeded.start(upstream, false);
    let proxy = server.proxy;
    let admin = Arc::new(Admin::new(server.admin, &server.admin_token));
    let victim = seeded.known[0].clone();
    let steady = seeded.known[1].clone();
    let single_ids: Vec<String> = seeded.known[2..2 + 2 * SINGLE_REVOKES]
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    let bulk_ids: Vec<String> = seeded.known[2 + 2 * SINGLE_REVOKES..]
        .iter()
        .map(|t| format!("\"{}\"", t.id))
        .collect();

    // Load: 64 connections sending the victim's token as fast as they can. Each request notes
    // when it was sent; one accepted after the revoke's reply breaks the promise. A second after
    // the revoke, the load moves to a token that stays valid, so that the single and bulk revokes
    // below run under forwarded traffic.
    let stop = Arc::new(AtomicBool::new(false));
    let switch = Arc::new(AtomicBool::new(false));
    let revoked_at = Arc::new(AtomicU64::new(u64::MAX));
    let epoch = Instant::now();
    let mut load = Vec::new();
    for _ in 0..CONNECTIONS {
        let victim_header = format!("Bearer {}", victim.secret.expose());
        let steady_header = format!("Bearer {}", steady.secret.expose());
        let (stop, switch, revoked_at) = (stop.clone(), switch.clone(), revoked_at.clone());
        load.push(tokio::spawn(async move {
            let mut sender = connect(proxy).await;
            let (mut sent, mut accepted_after) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let with_victim = !switch.load(Ordering::Relaxed);
                let header = if with_victim {
                    &victim_header
                } else {
                    &steady_header
                };
                let sent_at = epoch.elapsed().as_nanos() as u64;
                let request = Request::get("/load")
                    .header("host", "bench")
                    .header("authorization", header)
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let Ok(response) = sender.send_request(request).await else {
                    sender = connect(proxy).await;
                    continue;
                };
                let status = response.status();
                let _ = response.into_body().collect().await;
                sent += 1;
                if with_victim
                    && status == StatusCode::OK
                    && sent_at > revoked_at.load(Ordering::SeqCst)
                {
                    accepted_after += 1;
                }
            }
            (sent, accepted_after)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Two operators, each on a thread and runtime of its own, as the command line in a process
    // of its own would be, so that the load's tasks and the upstream's, on this runtime, do not
    // delay them. One runs at the process's priority: on these two cores its own wake-up, when
    // the reply arrives, waits behind the load generator's threads, which on a deployment run on
    // other machines. The other asks for the admin API's threads' priority, so that its figure is
    // tollgate's reply time. They take turns of 100 revokes, 1,000 each, so that drift hits both
    // alike.
    let conductor = {
        let (switch, revoked_at) = (switch.clone(), revoked_at.clone());
        std::thread::spawn(move || {
            let ordinary = Operator::start(admin.clone(), false);
            let favoured = Operator::start(admin, true);
            // The moment the reply is read is noted on the operator's thread, before anything
            // else runs there: a request sent after it and accepted breaks the promise.
            ordinary.revoke_noting_reply(
                format!("/api/v1/tokens/{}/revoke", victim.id),
                revoked_at,
                epoch,
            );
            std::thread::sleep(Duration::from_secs(1));
            switch.store(true, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(200));

            let (mut at_ordinary, mut at_favoured) = (Vec::new(), Vec::new());
            for (turn, ids) in single_ids.chunks(100).enumerate() {
                let (operator, times) = if turn % 2 == 0 {
                    (&ordinary, &mut at_ordinary)
                } else {
                    (&favoured, &mut at_favoured)
                };
                for id in ids {
                    let took = operator.post(format!("/api/v1/tokens/{id}/revoke"), "{}");
                    times.push(took);
                }
            }
            let body = format!("{{\"ids\":[{}]}}", bulk_ids.join(","));
            let bulk = favoured.post("/api/v1/tokens/revoke".to_owned(), &body);
            (at_ordinary, at_favoured, favoured.favour, bulk)
        })
    };
    let (at_ordinary, at_favoured, favour, bulk) =
        tokio::task::spawn_blocking(move || conductor.join())
            .await
            .expect("join")
            .expect("the operators' thread");

    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut accepted_after) = (0, 0);
    for task in load {
        let (s, a) = task.await.expect("load task");
        sent += s;
        accepted_after += a;
    }
    let (ordinary, favoured) = (Spread::of(at_ordinary), Spread::of(at_favoured));
    println!();
    println!(
        "revocation under load: {SIZE} tokens, {CONNECTIONS} connections sending one token ({sent} requests)"
    );
    println!("| measure | figure |");
    println!("|---|---|");
    println!("| requests accepted after the revoke reply | {accepted_after} |");
    println!(
        "| single revoke under load, p50 / p99, over {} ms ({SINGLE_REVOKES}, the operator favoured: {favour}) | {} |",
        ms(SLOW),
        favoured.brief()
    );
    println!(
        "| single revoke under load, p50 / p99, over {} ms ({SINGLE_REVOKES}, the operator at the process's priority) | {} |",
        ms(SLOW),
        ordinary.brief()
    );
    println!(
        "| one bulk revoke of {BULK} tokens (the operator favoured: {favour}) | {:.0} ms |",
        ms(bulk)
    );
    assert_eq!(
        accepted_after, 0,
        "a request sent after the revoke reply was accepted"
    );
}

/// A revoke's commit alone: the store's call, in this process, with no tollgate server.
/// Single revokes three times: with the cores idle; with every core kept busy by threads
/// spinning at the lowest priority (nice 19); and with the cores busy with loopback traffic that
/// does not pass through tollgate (64 connections from this process straight to the upstream, as
/// in the revocation part but without the proxy). The measuring thread asks for the admin API's
/// threads' priority (real-time, else nice -10), as the server's commit threads do. What a
/// durable commit costs on this machine's disk, and whether what slows it is a busy CPU or
/// traffic. Then one bulk revoke, cores idle.
///
/// Beside the store's commits, idle and busy, the same writes on a plain file without redb
/// (`DiskShapes`): where the store's tail matches the plain file's, the tail is the disk's, not
/// redb's or tollgate's.
fn commit_latency(runtime: &tokio::runtime::Handle, upstream: SocketAddr) {
    const SIZE: usize = 1_000_000;
    const REVOKES: usize = 1_000;
    const BULK: usize = 10_000;
    const CONNECTIONS: usize = 64;
    let seeded = Seeded::new(SIZE, 3 * REVOKES + BULK);
    let store_path = seeded.dir.path().join("tollgate.redb");
    let store = Store::open(&store_path).expect("store");
    // The spinners are made before this thread is favoured: a thread inherits its creator's
    // scheduling policy, and a real-time spinner would never let go of its core. They wait, not
    // spinning, until the busy condition.
    let stop = Arc::new(AtomicBool::new(false));
    let start_spinning = Arc::new(std::sync::Barrier::new(cores() + 2));
    let spinners: Vec<_> = (0..=cores())
        .map(|_| {
            let (stop, start) = (stop.clone(), start_spinning.clone());
            std::thread::spawn(move || {
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let favour = favour_this_thread();
    let measure = |tokens: &[Known]| {
        Spread::of(
            tokens
                .iter()
                .map(|token| {
                    let started = Instant::now();
                    let outcome = store
                        .revoke(&[token.id], None, "bench", 1_800_000_000)
                        .expect("revoke");
                    assert_eq!(outcome.revoked.len(), 1);
                    started.elapsed()
                })
                .collect(),
        )
    };
    let before = ThreadWrites::now();
    let idle = measure(&seeded.known[..REVOKES]);
    let per_commit = ThreadWrites::now().since(&before, REVOKES);
    let store_size = std::fs::metadata(&store_path).expect("store size").len();
    let mut disk = DiskShapes::new(seeded.dir.path(), store_size);
    let disk_idle = disk.measure(REVOKES);

    start_spinning.wait();
    std::thread::sleep(Duration::from_millis(200));
    let busy = measure(&seeded.known[REVOKES..2 * REVOKES]);
    let disk_busy = disk.measure(REVOKES);
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().expect("spinner");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (stop, answered) = (stop.clone(), answered.clone());
            runtime.spawn(async move {
                let mut sender = connect(upstream).await;
                while !stop.load(Ordering::Relaxed) {
                    let request = Request::get("/load")
                        .header("host", "bench")
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    let response = sender.send_request(request).await.expect("upstream");
                    let _ = response.into_body().collect().await;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (started, answered_before) = (Instant::now(), answered.load(Ordering::Relaxed));
    let traffic = measure(&seeded.known[2 * REVOKES..3 * REVOKES]);
    let traffic_rate = (answered.load(Ordering::Relaxed) - answered_before) as f64
        / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for task in load {
            task.await.expect("load task");
        }
    });

    let bulk: Vec<TokenId> = seeded.known[3 * REVOKES..].iter().map(|t| t.id).collect();
    let started = Instant::now();
    let outcome = store
        .revoke(&bulk, None, "bench", 1_800_000_000)
        .expect("bulk revoke");
    let bulk_time = started.elapsed();
    assert_eq!(outcome.revoked.len(), BULK);
    println!();
    println!(
        "a single revoke's commit, store only ({SIZE} tokens, {REVOKES} revokes each, measured at {favour})"
    );
    println!("| cores | p50 | p99 | over {} ms |", ms(SLOW));
    println!("|---|---|---|---|");
    println!("| idle | {idle} |");
    println!(
        "| busy ({} threads spinning at nice 19) | {busy} |",
        cores() + 1
    );
    println!(
        "| busy with loopback traffic, not through tollgate ({CONNECTIONS} connections to the upstream, {traffic_rate:.0} requests/s) | {traffic} |"
    );
    println!(
        "one bulk revoke of {BULK} tokens, store only, cores idle: {:.0} ms",
        ms(bulk_time)
    );
    println!();
    println!(
        "what a single revoke's commit wrote, on average: {:.1} write calls, {:.0} bytes; the commit's shape replayed below: {} write calls, {} bytes, and two flushes",
        per_commit.calls,
        per_commit.bytes,
        COMMIT_WRITE_CALLS + HEADER_WRITES,
        COMMIT_BYTES + HEADER_WRITES * HEADER
    );
    println!(
        "the same writes on a plain file beside the store, without redb ({REVOKES} each, cores idle then busy as above, at {favour}):"
    );
    println!("| writes | cores | p50 | p99 | over {} ms |", ms(SLOW));
    println!("|---|---|---|---|---|");
    for (cores, shapes) in [("idle", &disk_idle), ("busy", &disk_busy)] {
        for (shape, spread) in shapes {
            println!("| {shape} | {cores} | {spread} |");
        }
    }
}

/// The size of redb's page (its default), the unit a commit writes.
const PAGE: usize = 4096;

/// The bound set for a single revoke's p99 (README, Performance): the commits slower than it
/// are counted, since what decides a p99 is how often they come.
const SLOW: Duration = Duration::from_millis(5);

/// The p50 and p99 of a set of latencies, and how many were slower than `SLOW`.
struct Spread {
    p50: Duration,
    p99: Duration,
    slow: usize,
}

impl Spread {
    fn of(mut times: Vec<Duration>) -> Spread {
        times.sort();
        Spread {
            p50: percentile(&times, 0.50),
            p99: percentile(&times, 0.99),
            slow: times.iter().filter(|t| **t > SLOW).count(),
        }
    }

    /// On one line, for a table's cell: "p50 / p99 ms, slow".
    fn brief(&self) -> String {
        format!(
            "{:.2} / {:.2} ms, {}",
            ms(self.p50),
            ms(self.p99),
            self.slow
        )
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} ms | {:.2} ms | {}",
            ms(self.p50),
            ms(self.p99),
            self.slow
        )
    }
}

/// What the calling thread has written so far, from `/proc/thread-self/io`: write calls
/// (`syscw`, positioned writes included) and bytes (`wchar`). The difference over a run of
/// commits is what a commit writes; flushes are not counted there.
struct ThreadWrites {
    calls: u64,
    bytes: u64,
}

impl ThreadWrites {
    fn now() -> ThreadWrites {
        let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
        let field = |name: &str| -> u64 {
            io.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/thread-self/io"))
        };
        ThreadWrites {
            calls: field("syscw:"),
            bytes: field("wchar:"),
        }
    }

    /// The average per operation since `before`, over `operations`.
    fn since(&self, before: &ThreadWrites, operations: usize) -> PerCommit {
        PerCommit {
            calls: (self.calls - before.calls) as f64 / operations as f64,
            bytes: (self.bytes - before.bytes) as f64 / operations as f64,
        }
    }
}

struct PerCommit {
    calls: f64,
    bytes: f64,
}

/// A single revoke's commit on a store of a million tokens, as `strace -e
/// trace=pwrite64,fdatasync` shows redb 4.6 writing it in multi-process mode (two-phase): the
/// changed pages at their new places (twelve pages of 4 KiB and one run of 128 KiB, scattered
/// over the file), a flush, the header, a flush; with the header written three times in all.
/// The commit part prints the write calls and bytes it counted per commit beside this shape's, so
/// a redb that writes otherwise shows. These are the sizes of the writes of data, in order.
fn commit_writes() -> impl Iterator<Item = usize> {
    std::iter::repeat_n(PAGE, COMMIT_PAGES).chain([COMMIT_RUN])
}
const COMMIT_PAGES: usize = 12;
const COMMIT_RUN: usize = 32 * PAGE;
const COMMIT_WRITE_CALLS: usize = COMMIT_PAGES + 1;
const COMMIT_BYTES: usize = COMMIT_PAGES * PAGE + COMMIT_RUN;
/// How many times a commit writes redb's header, at the start of the file, and its bytes.
const HEADER_WRITES: usize = 3;
const HEADER: usize = 320;

/// A plain file of the store's size in the store's directory, written in three shapes: a
/// commit's (`commit_writes` at scattered places, then the header and two flushes as redb does);
/// the same bytes in one write call at one place, with the same flushes; and one page with one
/// flush, the least a durable change can write.
struct DiskShapes {
    file: std::fs::File,
    places: Places,
    /// A commit's bytes, gathered: every write takes its bytes from the start of these.
    bytes: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Shape {
    Commit,
    Adjacent,
    OnePage,
}

impl DiskShapes {
    fn new(dir: &Path, size: u64) -> DiskShapes {
        let mut file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("disk-shapes"))
            .expect("the plain file");
        // Written through, not sparse: a write into a hole would also allocate blocks, which a
        // commit into the store's own file seldom does.
        let mut random = 0x9E37_79B9_7F4A_7C15_u64;
        let mut chunk = vec![0u8; 1 << 20];
        let mut written = 0;
        while written < size.max(64 << 20) {
            for byte in chunk.iter_mut() {
                random = xorshift(random);
                *byte = random as u8;
            }
            file.write_all(&chunk).expect("fill the plain file");
            written += chunk.len() as u64;
        }
        file.sync_all().expect("flush the plain file");
        DiskShapes {
            file,
            places: Places {
                pages: written / PAGE as u64,
                random,
            },
            bytes: vec![0xA5; COMMIT_BYTES],
        }
    }

    /// Each shape `count` times, taking turns, so that a slow spell of the disk hits them alike.
    fn measure(&mut self, count: usize) -> Vec<(String, Spread)> {
        let shapes = [
            (
                format!(
                    "a commit's: {} write calls at scattered places ({COMMIT_BYTES} bytes), the header, two flushes",
                    COMMIT_WRITE_CALLS
                ),
                Shape::Commit,
            ),
            (
                format!("the same {COMMIT_BYTES} bytes in one write call, the header, two flushes"),
                Shape::Adjacent,
            ),
            (
                format!("one page ({PAGE} bytes), one flush"),
                Shape::OnePage,
            ),
        ];
        let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(count); shapes.len()];
        for _ in 0..count {
            for (times, (_, shape)) in times.iter_mut().zip(&shapes) {
                times.push(self.write(*shape));
            }
        }
        shapes
            .into_iter()
            .zip(times)
            .map(|((label, _), times)| (label, Spread::of(times)))
            .collect()
    }

    /// One durable write of `shape`, timed.
    fn write(&mut self, shape: Shape) -> Duration {
        use std::os::unix::fs::FileExt;
        let bytes = &self.bytes;
        let started = Instant::now();
        match shape {
            Shape::Commit => {
                self.file.write_all_at(&bytes[..HEADER], 0).expect("header");
                for size in commit_writes() {
                    let at = self.places.next(size);
                    self.file.write_all_at(&bytes[..size], at).expect("write");
                }
            }
            Shape::Adjacent => {
                self.file.write_all_at(&bytes[..HEADER], 0).expect("header");
                let at = self.places.next(bytes.len());
                self.file.write_all_at(bytes, at).expect("write");
            }
            Shape::OnePage => {
                let at = self.places.next(PAGE);
                self.file.write_all_at(&bytes[..PAGE], at).expect("write");
                self.file.sync_data().expect("flush");
                return started.elapsed();
            }
        }
        self.file.sync_data().expect("flush");
        self.file.write_all_at(&bytes[..HEADER], 0).expect("header");
        self.file.sync_data().expect("flush");
        self.file.write_all_at(&bytes[..HEADER], 0).expect("header");
        started.elapsed()
    }
}

/// Where the writes go: page-aligned places in a file of `pages` pages, past the first (the
/// header's), from xorshift: scattered, the same sequence every run.
struct Places {
    pages: u64,
    random: u64,
}

impl Places {
    /// A place for `size` bytes.
    fn next(&mut self, size: usize) -> u64 {
        self.random = xorshift(self.random);
        let span = (size / PAGE) as u64;
        (1 + self.random % (self.pages - 1 - span)) * PAGE as u64
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn idle_connections(upstream: SocketAddr) {
    const IDLE: usize = 10_000;
    let seeded = Seeded::new(0, 0);
    let server = seeded.start(upstream, false);
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss_kib();
    let mut open = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut stream = match TcpStream::connect(server.proxy) {
            Ok(s) => s,
            Err(e) => panic!(
                "connection {i}: {e} (raise the file limit: ulimit -n 65536, and check that \
                 tollgate raised its own)"
            ),
        };
        // One request each, so that every connection is a served keep-alive connection.
        stream
            .write_all(b"GET /idle HTTP/1.1\r\nHost: bench\r\n\r\n")
            .expect("write");
        read_response(&mut stream);
        open.push(stream);
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = server.rss_kib();
    println!();
    println!("| idle keep-alive connections | resident memory before / after | per connection |");
    println!("|---|---|---|");
    println!(
        "| {IDLE} | {:.1} / {:.1} MiB | {:.1} KiB |",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after - before) as f64 / IDLE as f64
    );
    drop(open);
}

/// Two processes on one store: how long after a change is committed (by a third writer, as the
/// offline command line would) the second process refuses the token, and how long a revoke
/// through one process's admin port takes when it waits for the other to apply it.
async fn peers_on_one_store(upstream: SocketAddr) {
    const SIZE: usize = 100_000;
    const ROUNDS: usize = 300;
    let seeded = tokio::task::spawn_blocking(|| Seeded::new(SIZE, 2 * ROUNDS))
        .await
        .expect("seed");
    let first = seeded.start(upstream, false);
    let second = Server::start_named(seeded.dir.path(), "second", upstream, false);
    let store = Store::open(&seeded.dir.path().join("tollgate.redb")).expect("open the store");
    let mut probe = connect(second.proxy).await;

    // Applied lag: commit straight to the file, then ask the second process until it refuses.
    let mut lag = Vec::with_capacity(ROUNDS);
    for token in &seeded.known[..ROUNDS] {
        let header = format!("Bearer {}", token.secret.expose());
        assert_eq!(send(&mut probe, &header).await, StatusCode::OK);
        let outcome = store
            .revoke(&[token.id], None, "bench", 1_800_000_000)
            .expect("revoke");
        let committed = Instant::now();
        assert_eq!(outcome.revoked.len(), 1);
        while send(&mut probe, &header).await != StatusCode::UNAUTHORIZED {}
        lag.push(committed.elapsed());
    }

    // A revoke through the first process's admin port, answered once the second applied it.
    let admin = Admin::new(first.admin, &first.admin_token);
    let mut round_trip = Vec::with_capacity(ROUNDS);
    for token in &seeded.known[ROUNDS..] {
        let started = Instant::now();
        admin
            .post(&format!("/api/v1/tokens/{}/revoke", token.id), "{}")
            .await;
        round_trip.push(started.elapsed());
        let header = format!("Bearer {}", token.secret.expose());
        assert_eq!(
            send(&mut probe, &header).await,
            StatusCode::UNAUTHORIZED,
            "the second process accepted a token after the revoke reply"
        );
    }
    lag.sort();
    round_trip.sort();
    let pct = |v: &[Duration], p: f64| ms(percentile(v, p));
    println!();
    println!("two processes on one store ({SIZE} tokens, {ROUNDS} changes each)");
    println!("| measure | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| applied lag: commit by another writer → refused by the second process | {:.2} ms | {:.2} ms |",
        pct(&lag, 0.50),
        pct(&lag, 0.99)
    );
    println!(
        "| revoke through the first process, replied once the second applied it | {:.2} ms | {:.2} ms |",
        pct(&round_trip, 0.50),
        pct(&round_trip, 0.99)
    );
}

/// One request on a keep-alive connection; its status.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    authorization: &str,
) -> StatusCode {
    let request = Request::get("/probe")
        .header("host", "bench")
        .header("authorization", authorization)
        .body(Empty::<Bytes>::new())
        .expect("request");
    // A connection takes the next request only once it has finished with the last one.
    sender.ready().await.expect("the probe connection is open");
    let response = sender.send_request(request).await.expect("probe");
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

// ---- a seeded store and a server on it ----

#[derive(Clone)]
struct Known {
    id: TokenId,
    secret: TokenSecret,
}

struct Seeded {
    dir: tempfile::TempDir,
    /// Tokens whose secrets the benchmark keeps, to send or to revoke.
    known: Vec<Known>,
}

impl Seeded {
    /// A store with `size` tokens, the first `known` of them with their secrets kept.
    fn new(size: usize, known: usize) -> Seeded {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("tollgate.redb")).expect("store");
        let mut kept = Vec::with_capacity(known);
        for chunk_start in (0..size.max(known)).step_by(100_000) {
            let chunk_end = (chunk_start + 100_000).min(size.max(known));
            let records: Vec<TokenRecord> = (chunk_start..chunk_end)
                .map(|i| {
                    let secret = TokenSecret::generate();
                    let record = TokenRecord::issue(
                        TokenId::generate(),
                        TokenSpec::agent(&format!("agent-{i}")),
                        &secret,
                        1_800_000_000,
                    );
                    if i < known {
                        kept.push(Known {
                            id: record.id,
                            secret,
                        });
                    }
                    record
                })
                .collect();
            store.import(&records, "bench").expect("seed");
        }
        Seeded { dir, known: kept }
    }

    fn start(&self, upstream: SocketAddr, access_log: bool) -> Server {
        Server::start(self.dir.path(), upstream, access_log)
    }
}

struct Server {
    child: Child,
    proxy: SocketAddr,
    admin: SocketAddr,
    admin_token: String,
}

impl Server {
    fn start(dir: &Path, upstream: SocketAddr, access_log: bool) -> Server {
        Server::start_named(dir, "tollgate", upstream, access_log)
    }

    /// A server whose config is `dir/{name}.toml`, on the store (and admin token) in `dir`.
    fn start_named(dir: &Path, name: &str, upstream: SocketAddr, access_log: bool) -> Server {
        let proxy = free_port();
        let admin = free_port();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[store]\npath = {store:?}\n[admin]\nbind = \"{admin}\"\ntoken_file = {token:?}\n\
                 [log]\nformat = \"json\"\nlevel = \"warn\"\naccess = {access_log}\n\
                 [[listener]]\nname = \"bench\"\nbind = \"{proxy}\"\nupstream = \"http://{upstream}\"\n\
                 [[listener.route]]\npath = \"/idle\"\npublic = true\n",
                store = path_str(&dir.join("tollgate.redb")),
                token = path_str(&dir.join("admin.token")),
            ),
        )
        .expect("config");
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tollgate");
        let mut server = Server {
            child,
            proxy,
            admin,
            admin_token: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !server.ready() {
            assert!(Instant::now() < deadline, "tollgate never became ready");
            std::thread::sleep(Duration::from_millis(2));
        }
        server.admin_token = std::fs::read_to_string(dir.join("admin.token"))
            .expect("admin token")
            .trim()
            .to_owned();
        server
    }

    fn ready(&mut self) -> bool {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("tollgate exited: {status}");
        }
        let Ok(mut stream) = TcpStream::connect(self.admin) else {
            return false;
        };
        let _ =
            stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }

    /// Resident memory, from /proc.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("process status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- small helpers ----

fn path_str(p: &Path) -> String {
    p.to_str().expect("temp paths are UTF-8").to_owned()
}

fn free_port() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The `p` quantile of latencies sorted in ascending order.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Reads one response with a Content-Length body.
fn read_response(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed before the response");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return;
        }
    }
}

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// Gives the calling thread the admin API's threads' priority (`limits::favour_this_thread`)
/// and says which one it got, for the figures' labels.
fn favour_this_thread() -> String {
    use tollgate::limits::{ADMIN_NICE, Favour};
    match tollgate::limits::favour_this_thread() {
        Ok(Favour::RealTime) => "real-time (SCHED_FIFO)".to_owned(),
        Ok(Favour::Nice(_)) => format!("nice {ADMIN_NICE}"),
        Err(_) => "refused, the process's priority".to_owned(),
    }
}

/// One call for an operator: the path, the body, and where to note when its reply was read
/// (nanoseconds since the instant given), if anywhere.
type Call = (String, String, Option<(Arc<AtomicU64>, Instant)>);

/// An operator's client on a thread and runtime of its own (see `revocation_under_load`).
struct Operator {
    calls: std::sync::mpsc::Sender<Call>,
    replies: std::sync::mpsc::Receiver<Duration>,
    /// The priority its thread runs at, for the figures' labels.
    favour: String,
}

impl Operator {
    /// `favoured`: the thread asks for the admin API's threads' priority.
    fn start(admin: Arc<Admin>, favoured: bool) -> Operator {
        let (calls, incoming) = std::sync::mpsc::channel::<Call>();
        let (outgoing, replies) = std::sync::mpsc::channel();
        let (said, favour) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = said.send(if favoured {
                favour_this_thread()
            } else {
                "the process's priority".to_owned()
            });
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("operator runtime");
            for (path, body, note) in incoming {
                let started = Instant::now();
                runtime.block_on(admin.post(&path, &body));
                let replied = Instant::now();
                if let Some((at, since)) = note {
                    at.store(
                        replied.duration_since(since).as_nanos() as u64,
                        Ordering::SeqCst,
                    );
                }
                if outgoing.send(replied - started).is_err() {
                    break;
                }
            }
        });
        Operator {
            calls,
            replies,
            favour: favour.recv().expect("the operator's priority"),
        }
    }

    /// Makes one call and returns how long its reply took, timed on the operator's thread.
    fn post(&self, path: String, body: &str) -> Duration {
        self.call((path, body.to_owned(), None))
    }

    /// Makes one revoke and notes in `at` when its reply was read (nanoseconds since `since`),
    /// on the operator's thread the moment it is read.
    fn revoke_noting_reply(&self, path: String, at: Arc<AtomicU64>, since: Instant) {
        self.call((path, "{}".to_owned(), Some((at, since))));
    }

    fn call(&self, call: Call) -> Duration {
        self.calls.send(call).expect("the operator's thread");
        self.replies.recv().expect("the operator's reply")
    }
}

/// The admin API, a new connection per call, as the command line makes.
struct Admin {
    addr: SocketAddr,
    auth: String,
}

impl Admin {
    fn new(addr: SocketAddr, token: &str) -> Admin {
        Admin {
            addr,
            auth: format!("Bearer {token}"),
        }
    }

    async fn post(&self, path: &str, body: &str) {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("admin connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let request = Request::post(path)
            .header("host", "bench")
            .header("authorization", &self.auth)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let response = sender.send_request(request).await.expect("admin call");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
}

async fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
