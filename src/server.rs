//! `tollgate serve`: start in a fixed order (config → store → cache → bind → ready), then serve
//! until told to stop, then drain, in one path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{self, AdminCredential, AdminState, CredentialError};
use crate::config::Config;
use crate::follower;
use crate::metrics::Metrics;
use crate::proxy::{self, ListenerState};
use crate::registry::Registry;
use crate::reload::Reloader;
use crate::store::{Store, StoreError};
use crate::tls::{self, LiveCert, TlsError};
use crate::workers::Workers;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("cannot listen on {addr} for {listener}")]
    Bind {
        listener: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("start-up failed: the blocking pool is gone")]
    Startup,
    #[error("cannot start the admin thread")]
    AdminThread(#[source] std::io::Error),
    #[error("cannot start the listeners' worker threads")]
    Workers(#[source] std::io::Error),
    /// A certificate, key or CA file of `what` (a listener, the admin port) cannot be used.
    #[error("{what}")]
    Tls { what: String, source: TlsError },
}

/// A started server: bound, loaded and ready.
pub struct Running {
    pub admin_addr: SocketAddr,
    pub listener_addrs: Vec<(String, SocketAddr)>,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    stop_following: watch::Sender<bool>,
    following: tokio::task::JoinHandle<()>,
    /// The listeners' threads; dropped once they have drained.
    workers: Workers,
}

/// Opens the store, loads the cache, binds every listener and starts serving.
pub async fn start(config: &Config) -> Result<Running, ServerError> {
    let open_files = crate::limits::raise_open_files();
    // Each client connection may hold an upstream connection too.
    let wanted: u64 = config
        .listeners
        .iter()
        .map(|l| 2 * l.max_connections as u64)
        .sum::<u64>()
        + 256;
    if let Some(limit) = open_files.filter(|&limit| limit < wanted) {
        tracing::warn!(
            limit,
            wanted,
            "the open-file limit is below what the listeners' max_connections may need; raise \
             it (LimitNOFILE, ulimit -n) or lower max_connections"
        );
    }
    let store_path = config.store_path.clone();
    let token_file = config.admin.token_file.clone();
    // File and store work blocks; keep it off the async threads.
    let (registry, (credential, created)) = tokio::task::spawn_blocking(move || {
        let store = Store::open(&store_path)?;
        let registry = Registry::load(store)?;
        let credential = AdminCredential::load_or_create(&token_file)?;
        Ok::<_, ServerError>((registry, credential))
    })
    .await
    .map_err(|_| ServerError::Startup)??;
    let registry = Arc::new(registry);
    let metrics = Arc::new(Metrics::new());
    let schema = registry.store().schema_version();
    tracing::info!(
        store = %config.store_path.display(),
        tokens = registry.cache().len(),
        schema,
        "store opened"
    );
    if schema == crate::store::REVOKED_IN_RECORDS {
        tracing::info!(
            store = %config.store_path.display(),
            "the store stays at schema {schema} while another process has it open (an older \
             release may read it); the first start with the file to itself moves it to {}",
            crate::store::SCHEMA_VERSION
        );
    }

    if created {
        tracing::info!(
            path = %config.admin.token_file.display(),
            "generated a new admin token; read it from this file"
        );
    }

    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stop_rx) = watch::channel(false);
    let grace = config.shutdown_grace;

    // Read every certificate before binding: a bad file stops the start as a busy port does.
    let mut states = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let what = || format!("listener {:?}", listener.name);
        let state = ListenerState::new(
            listener,
            registry.cache().clone(),
            metrics.listener(&listener.name),
            config.log.access,
        )
        .map_err(|source| ServerError::Tls {
            what: what(),
            source,
        })?;
        let acceptor = serving_tls(
            &listener.name,
            listener.tls.as_ref(),
            tls::server::ALPN_H2_HTTP1,
        )
        .map_err(|source| ServerError::Tls {
            what: what(),
            source,
        })?;
        states.push((Arc::new(state), acceptor));
    }
    let admin_tls = serving_tls("admin", config.admin.tls.as_ref(), tls::server::ALPN_HTTP1)
        .map_err(|source| ServerError::Tls {
            what: "admin".into(),
            source,
        })?;

    // Bind everything before serving anything: a port that is taken stops the start cleanly.
    // Ports are shared (SO_REUSEPORT) only while another process serves from this store: a
    // restart's predecessor. Otherwise a port in use is someone else's, and that stops the start.
    let share_ports = {
        let registry = registry.clone();
        tokio::task::spawn_blocking(move || registry.live_peers().map(|p| !p.is_empty()))
            .await
            .map_err(|_| ServerError::Startup)??
    };
    let mut bound = Vec::with_capacity(config.listeners.len());
    for (listener, state) in config.listeners.iter().zip(states) {
        let sockets = bind_per_worker(&listener.name, listener.bind, share_ports, config.workers)?;
        bound.push((listener, state, sockets));
    }
    let admin_tcp = bind("admin", config.admin.bind, share_ports)?;
    let admin_tls_on = admin_tls.is_some();
    let admin_addr = local_addr(&admin_tcp, config.admin.bind);
    let admin_state = Arc::new(AdminState {
        registry: registry.clone(),
        metrics: metrics.clone(),
        credential,
        ready: ready.clone(),
    });
    let admin_served =
        serve_admin_on_own_thread(admin_tcp, admin_state, admin_tls, stop_rx.clone(), grace)?;
    let workers = Workers::start(config.workers).map_err(ServerError::Workers)?;

    // Join the processes serving from this store, the last step before serving requests: from
    // here on, a change committed by another process waits for this one to apply it. (Nothing
    // after this can fail the start and leave a row behind.)
    let peer_id = new_peer_id();
    // Listening before the catch-up read: a commit made between the two still wakes us.
    let bell = follower::listen(&config.store_path);
    {
        let (registry, metrics, peer_id) = (registry.clone(), metrics.clone(), peer_id.clone());
        tokio::task::spawn_blocking(move || follower::join(&registry, &peer_id, &metrics))
            .await
            .map_err(|_| ServerError::Startup)??;
    }

    let mut tasks = JoinSet::new();
    let mut listener_addrs = Vec::new();
    let mut reloadable = Vec::with_capacity(bound.len());
    for (listener, (state, acceptor), sockets) in bound {
        let addr = sockets[0].local_addr().unwrap_or(listener.bind);
        tracing::info!(listener = %listener.name, addr = %addr, upstream = %listener.upstream.authority, tls = acceptor.is_some(), workers = workers.count(), "listening");
        listener_addrs.push((listener.name.clone(), addr));
        reloadable.push((listener.name.clone(), state.clone()));
        let name = &listener.name;
        let serving = workers.spawn_on_each(sockets, |socket| {
            let (name, state, acceptor, stop) =
                (name.clone(), state.clone(), acceptor.clone(), stop_rx.clone());
            async move {
                match TcpListener::from_std(socket) {
                    Ok(listening) => proxy::serve(listening, state, acceptor, stop, grace).await,
                    Err(e) => {
                        tracing::error!(listener = %name, error = %e, "a worker cannot serve the listener");
                    }
                }
            }
        });
        for worker in serving {
            let name = listener.name.clone();
            tasks.spawn(async move {
                if let Err(e) = worker.await {
                    tracing::error!(listener = %name, error = %e, "a worker's listener failed");
                }
            });
        }
    }
    tracing::info!(listener = "admin", addr = %admin_addr, tls = admin_tls_on, "listening");
    tasks.spawn(admin_served);
    // Before ready: from then on a SIGHUP reloads rather than ends the process.
    metrics.config_loaded(crate::time::now());
    let reloader = Reloader::start(config, reloadable, metrics.clone()).await;
    tasks.spawn(reloader.run(stop_rx.clone()));
    tasks.spawn(flush_last_used(
        registry.clone(),
        metrics.clone(),
        config.last_used_flush,
        stop_rx,
    ));
    // The follower outlives the listeners: while they drain, they still answer requests, and
    // other processes' revokes must still reach them.
    let (stop_following, following_rx) = watch::channel(false);
    let following = tokio::spawn(follower::run(
        registry.clone(),
        metrics.clone(),
        bell,
        peer_id,
        following_rx,
    ));

    ready.store(true, Ordering::Release);
    tracing::info!(admin = %admin_addr, "ready");
    crate::systemd::ready();
    Ok(Running {
        admin_addr,
        listener_addrs,
        registry,
        ready,
        stop,
        tasks,
        stop_following,
        following,
        workers,
    })
}

impl Running {
    /// Serves until `signal` completes, then stops accepting, drains within the grace period and
    /// writes the last-used times still in memory.
    pub async fn run_until(mut self, signal: impl Future<Output = &'static str>) {
        tokio::select! {
            name = signal => tracing::info!(signal = name, "stopping: draining in-flight requests"),
            // A serving task only ends on its own if it failed; stop the rest too.
            _ = self.tasks.join_next() => tracing::error!("a listener stopped unexpectedly; stopping"),
        }
        // Not ready from now on, so that load balancers stop sending while the rest drains.
        self.ready.store(false, Ordering::Release);
        crate::systemd::stopping();
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        // Every listener has drained, or its grace period is over: what the workers still hold
        // goes with them.
        drop(self.workers);
        self.stop_following.send_replace(true);
        let _ = self.following.await;
        let registry = self.registry.clone();
        match tokio::task::spawn_blocking(move || registry.flush_last_used()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not write last-used times"),
            Err(_) => tracing::warn!("could not write last-used times"),
        }
        tracing::info!("stopped");
    }
}

/// Serves the admin API on a thread and runtime of its own, favoured over the data path's
/// threads (`limits::favour_this_thread`): under full proxy load an operator's revoke must not
/// wait behind them (its reply is what tells the operator the token is refused from now on).
/// The returned future ends when the admin server has stopped.
fn serve_admin_on_own_thread(
    tcp: TcpListener,
    state: Arc<AdminState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> Result<impl Future<Output = ()> + Send + 'static, ServerError> {
    let std_listener = tcp.into_std().map_err(ServerError::AdminThread)?;
    // This runtime's threads run at the process's priority: the admin API hands them what it
    // must not favour (`limits::at_process_priority`).
    let upkeep = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("tollgate-admin".into())
        .spawn(move || {
            use crate::limits::{ADMIN_NICE, Favour, favour_this_thread};
            match favour_this_thread() {
                Ok(Favour::RealTime) => {
                    tracing::debug!("the admin API runs real-time (SCHED_FIFO, priority 1)")
                }
                Ok(Favour::Nice(real_time)) => tracing::info!(
                    nice = ADMIN_NICE,
                    real_time = %real_time,
                    "the admin API runs at a raised nice value, not real-time: that needs an \
                     RLIMIT_RTPRIO of 1 (systemd: LimitRTPRIO=1 and RestrictRealtime=no) or \
                     CAP_SYS_NICE; under full proxy load its replies may wait a few \
                     milliseconds for a core"
                ),
                Err(refused) => tracing::info!(
                    real_time = %refused.real_time,
                    nice = %refused.nice,
                    "the admin API runs at the process's priority: raising it needs an \
                     RLIMIT_RTPRIO of 1 (systemd: LimitRTPRIO=1, RestrictRealtime=no), an \
                     RLIMIT_NICE of 30 (LimitNICE=30) or CAP_SYS_NICE; under full proxy load \
                     its replies may wait for a core"
                ),
            }
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // The blocking threads run the store's commits: favoured too, quietly (the
                // admin thread said whether it could be).
                .on_thread_start(|| {
                    let _ = favour_this_thread();
                })
                .build()
                .and_then(|runtime| {
                    runtime.block_on(async move {
                        let tcp = TcpListener::from_std(std_listener)?;
                        admin::serve(tcp, state, upkeep, tls, stop, grace).await;
                        Ok(())
                    })
                });
            if let Err(e) = served {
                tracing::error!(error = %e, "the admin server could not run");
            }
            let _ = done_tx.send(());
        })
        .map_err(ServerError::AdminThread)?;
    Ok(async move {
        let _ = done_rx.await;
    })
}

/// The acceptor of a listener (or the admin port) with TLS: its certificate read and checked now,
/// then followed on disk for as long as the acceptor lives.
fn serving_tls(
    name: &str,
    files: Option<&crate::config::TlsFiles>,
    alpn: &[&[u8]],
) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
    let Some(files) = files else { return Ok(None) };
    let cert = LiveCert::load(name, "serving", files, tls::SERVING_KEYS)?;
    cert.watch();
    tls::server::acceptor(cert, alpn).map(Some)
}

/// Binds with SO_REUSEPORT, so that a successor process can bind the same ports while this one
/// still serves them (a restart without a dropped request; the kernel spreads new connections
/// over both until this one closes its sockets). With `share` false, a port already in use
/// stops the start, as it would without SO_REUSEPORT: nobody on this store holds it, so
/// whoever does would silently take part of the traffic.
fn bind(name: &str, addr: SocketAddr, share: bool) -> Result<TcpListener, ServerError> {
    let error = |source| ServerError::Bind {
        listener: name.to_owned(),
        addr,
        source,
    };
    if !share && addr.port() != 0 {
        // A plain bind fails on a port that any socket, sharing or not, holds.
        drop(std::net::TcpListener::bind(addr).map_err(error)?);
    }
    reuse_port_listener(addr).map_err(error)
}

/// A socket per worker on one address, all with SO_REUSEPORT (see `bind`): the kernel spreads
/// new connections over them by their addresses, so each worker gets its share whatever the
/// others are doing. With port 0, the first socket's port is the others'. Returned as std
/// sockets, for each worker to register with its own runtime.
fn bind_per_worker(
    name: &str,
    addr: SocketAddr,
    share: bool,
    workers: usize,
) -> Result<Vec<std::net::TcpListener>, ServerError> {
    let first = bind(name, addr, share)?;
    let bound = local_addr(&first, addr);
    let error = |source| ServerError::Bind {
        listener: name.to_owned(),
        addr: bound,
        source,
    };
    let mut sockets = Vec::with_capacity(workers);
    sockets.push(first.into_std().map_err(error)?);
    for _ in 1..workers {
        let socket = reuse_port_listener(bound).and_then(TcpListener::into_std);
        sockets.push(socket.map_err(error)?);
    }
    Ok(sockets)
}

fn reuse_port_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The accept queue's length; the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// This process's key in the store's peers table: random per start, so that a restarted
/// process is never taken for the one it replaces.
fn new_peer_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the token secrets could not be made either; fall back to the pid
    // and time, which are unique enough for a row key.
    if getrandom::fill(&mut bytes).is_err() {
        let fallback = (u64::from(std::process::id()) << 32) ^ crate::time::now_millis() as u64;
        bytes = fallback.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn local_addr(listener: &TcpListener, configured: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(configured)
}

/// How long a deleted token's tombstone stays in the cache (so logs say "deleted", not "unknown").
const TOMBSTONE_AGE: i64 = 3600;
/// How often tombstones are swept: a sweep scans the whole cache.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Background upkeep: writes last-used times in coalesced batches (one transaction per interval at
/// most, never a disk write per request), keeps metrics storage bounded, sweeps old tombstones.
async fn flush_last_used(
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return,
        }
        metrics.upkeep();
        let sweep = last_sweep.elapsed() >= SWEEP_EVERY;
        if sweep {
            last_sweep = tokio::time::Instant::now();
        }
        let registry = registry.clone();
        let upkeep = move || {
            if sweep {
                registry
                    .cache()
                    .sweep_tombstones(crate::time::now(), TOMBSTONE_AGE);
            }
            registry.flush_last_used()
        };
        match tokio::task::spawn_blocking(upkeep).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not write last-used times"),
            Err(_) => return,
        }
    }
}
