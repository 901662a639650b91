//! The server's life: open the store, build the router, bind, serve, shut down cleanly.
//!
//! [`start`] returns once the socket is bound, with the real address (port 0 picks a free one),
//! which is what tests and `tally demo` use. Shutdown stops accepting, lets in-flight requests
//! finish (their batches are already queued for the writer), then drains the writer, commits and
//! checkpoints, so a SIGTERM loses nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::budgets::dispatcher::Dispatcher;
use crate::budgets::model::Source;
use crate::budgets::{self, Engine};
use crate::config::{resolve_listen, Config};
use crate::keys::KeyRing;
use crate::pricing::Pricer;
use crate::store::Store;
use crate::web::auth::Auth;
use crate::web::session::Sessions;
use crate::web::{self, AppState};

/// How long shutdown waits for in-flight requests and the writer.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A running server.
pub struct Server {
    addr: SocketAddr,
    store: Store,
    keys: Arc<KeyRing>,
    budgets: Arc<Engine>,
    dispatcher: Option<Dispatcher>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The store the server writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The budgets engine (definitions, snapshot, dispatcher wake-up).
    pub fn budgets(&self) -> &Arc<Engine> {
        &self.budgets
    }

    /// Stops accepting, finishes in-flight requests, drains and checkpoints the writer.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task).await {
            Ok(joined) => joined
                .context("server task panicked")?
                .context("server error")?,
            Err(_) => {
                tracing::warn!(
                    "in-flight requests did not finish within {SHUTDOWN_GRACE:?}; stopping anyway"
                );
                self.task.abort();
            }
        }
        if let Err(e) = crate::keys::flush_last_used(&self.store, &self.keys).await {
            tracing::warn!(error = %e, "API keys' last-use times not written");
        }
        // An attempt in flight finishes and is recorded before the writer stops.
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.stop(&self.budgets, SHUTDOWN_GRACE).await;
        }
        self.store.shutdown(SHUTDOWN_GRACE).await
    }

    /// Serves until `signal` resolves, then shuts down.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        signal.await;
        tracing::info!("shutting down: draining requests and the writer");
        self.shutdown().await?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// Opens the store and starts serving on `config.listen`.
pub async fn start(config: Config) -> anyhow::Result<Server> {
    let addrs = resolve_listen(&config.listen).await?;
    let loopback = addrs.iter().all(|a| a.ip().is_loopback());
    if config.admin_key.is_none() {
        if !loopback {
            bail!(
                "refusing to listen on {} without an admin key: anyone who can reach this address could read and \
                 write your data. Set TALLY_ADMIN_KEY (for example `export TALLY_ADMIN_KEY=$(openssl rand -hex 32)`) \
                 or admin_key in tally.toml, or listen on 127.0.0.1",
                config.listen
            );
        }
        tracing::warn!(listen = %config.listen, "no admin key set: the API is open to anyone on this machine (loopback only)");
    }
    let pricer =
        Arc::new(Pricer::builtin(&config.pricing).context("invalid [pricing] configuration")?);
    let settings = config.alerts.parse().map_err(anyhow::Error::msg)?;
    let engine = Engine::new(
        settings,
        config.public_url.clone(),
        crate::store::queries::costs::Source::configured(config.storage.use_rollups),
    );
    let store = {
        let data_dir = config.data_dir.clone();
        let storage = config.storage.clone();
        let hooks = vec![engine.hook()];
        tokio::task::spawn_blocking(move || Store::open_with_hooks(&data_dir, &storage, hooks))
            .await??
    };
    let keys = Arc::new(KeyRing::default());
    crate::keys::reload(&store, &keys)
        .await
        .context("cannot load API keys")?;
    // Before the socket opens, so no event is evaluated against a half-loaded set.
    budgets::service::apply_declared(
        &store,
        &engine,
        &config.budgets,
        &config.channels,
        Source::Config,
    )
    .await
    .context("cannot apply the budgets and channels of the configuration")?;
    let listener = TcpListener::bind(&addrs[..])
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let secret = session_secret(&store)
        .await
        .context("cannot load the session secret")?;
    let sessions = Sessions::new(
        secret,
        chrono::Duration::hours(config.session_hours as i64),
        config.admin_key.as_deref(),
    );
    let auth = Arc::new(
        Auth::new(config.admin_key.as_deref(), keys.clone(), sessions)
            .with_metrics_token(config.metrics_token.as_deref()),
    );
    let admission = Arc::new(web::admission::Admission::new(
        config.ingest.max_concurrent_requests,
        Duration::from_millis(config.ingest.max_wait_ms),
    ));
    let state = AppState {
        config: Arc::new(config),
        store: store.clone(),
        pricer,
        keys: keys.clone(),
        budgets: engine.clone(),
        auth,
        admission,
    };
    spawn_checkpointer(store.clone());
    let dispatcher = Dispatcher::spawn(store.clone(), engine.clone())?;
    budgets::service::spawn_refresher(store.clone(), engine.clone());
    spawn_last_used_flusher(store.clone(), keys.clone());
    let app = web::router(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, "listening");
    Ok(Server {
        addr,
        store,
        keys,
        budgets: engine,
        dispatcher: Some(dispatcher),
        stop: Some(stop),
        task,
    })
}

/// Checkpoints every few minutes so the WAL of a quiet server does not linger.
fn spawn_checkpointer(store: Store) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        tick.tick().await;
        loop {
            tick.tick().await;
            if !store.writer().is_alive() {
                return;
            }
            if let Err(e) = store.writer().checkpoint().await {
                tracing::debug!(error = %e, "periodic checkpoint skipped");
            }
        }
    });
}

/// The secret that signs session cookies: made once, kept in the database so sessions survive
/// restarts.
async fn session_secret(store: &Store) -> anyhow::Result<Vec<u8>> {
    use crate::store::queries::keys::{set_setting, setting};
    if let Some(hex) = store.read(|conn| setting(conn, "session_secret")).await? {
        if let Some(bytes) = decode_hex(&hex) {
            return Ok(bytes);
        }
        tracing::warn!("the stored session secret is unreadable; making a new one (signed-in users must sign in again)");
    }
    let mut bytes = vec![0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    store
        .writer()
        .exec(move |conn| set_setting(conn, "session_secret", &hex))
        .await?;
    Ok(bytes)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// Writes API keys' last-use times back once a minute (authentication itself never writes).
fn spawn_last_used_flusher(store: Store, keys: Arc<KeyRing>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if !store.writer().is_alive() {
                return;
            }
            if let Err(e) = crate::keys::flush_last_used(&store, &keys).await {
                tracing::debug!(error = %e, "last-used times not written");
            }
        }
    });
}

/// Resolves on SIGINT or SIGTERM.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // The handlers are installed here, not when the future is first polled: the caller
    // announces that it listens before it polls, and a SIGTERM in between would otherwise get
    // the default action (killed, no drain, no checkpoint, a failed exit status).
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            // A handler that could not be installed never fires.
            async fn recv(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = recv(term) => {},
                () = recv(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
