//! Wiring: builds every component from settings once (clients, pools, presigner), then runs
//! the poller and the HTTP server until the cancellation token fires or either of them dies,
//! so systemd restarts a broken process. Talks to systemd through `sd_notify` when started
//! with `NOTIFY_SOCKET`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_credential_types::Credentials;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::events::EventSpec;
use crate::http::{ApiState, router};
use crate::metrics::Metrics;
use crate::mirror::{MirrorClient, RetryPolicy};
use crate::poller::{CatchUp, Poller, RescanPolicy};
use crate::presign::Presigner;
use crate::status::PollStatus;
use crate::store::Store;
use crate::urls::UrlCache;

/// Knobs that are not part of `config.toml`: tests and benchmarks set them.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// Mirror retry policy (`run --once` gives up after a bounded number of attempts).
    pub retry: RetryPolicy,
    /// Fixed S3 credentials instead of the AWS credential chain.
    pub credentials: Option<Credentials>,
    /// The late-arrival sweep.
    pub rescan: RescanPolicy,
}

/// How long the HTTP server may drain after shutdown is requested. With the poller's
/// cancellation this keeps SIGTERM-to-exit well under systemd's and the SPEC's 5 s.
const DRAIN_DEADLINE: Duration = Duration::from_secs(3);

/// The assembled daemon.
#[derive(Debug)]
pub struct App {
    settings: Settings,
    store: Store,
    poller: Poller,
    api: ApiState,
    metrics: Arc<Metrics>,
}

impl App {
    /// Opens and migrates the database and builds every component. Binds nothing.
    pub async fn build(settings: Settings, spec: EventSpec, options: AppOptions) -> anyhow::Result<Self> {
        let store = Store::open(&settings.database.path).await?;
        store.migrate().await.context("while applying database migrations")?;
        let metrics = Arc::new(Metrics::new());
        let status = Arc::new(PollStatus::default());
        let presigner = Arc::new(match options.credentials {
            Some(c) => Presigner::with_credentials(&settings.storage, c),
            None => Presigner::from_settings(&settings.storage).await,
        });
        let m = &settings.mirror;
        let client = MirrorClient::new(
            m.base_url.clone(),
            m.contract.clone(),
            m.page_limit,
            m.request_timeout,
            options.retry,
            metrics.clone(),
        )
        .context("while building the mirror node HTTP client")?;
        let poller = Poller::new(
            client,
            store.clone(),
            Arc::new(spec),
            presigner.clone(),
            m.contract.clone(),
            m.start_timestamp,
            m.poll_interval,
            status.clone(),
            metrics.clone(),
        )
        .with_rescan(options.rescan);
        let urls = Arc::new(UrlCache::new(
            store.clone(),
            presigner,
            settings.storage.refresh_before,
            metrics.clone(),
        ));
        let api = ApiState {
            store: store.clone(),
            urls,
            status,
            metrics: metrics.clone(),
            contract: m.contract.clone(),
            ready_window: m.poll_interval * 3 + m.request_timeout,
            answers: Arc::default(),
        };
        Ok(Self {
            settings,
            store,
            poller,
            api,
            metrics,
        })
    }

    /// Shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Binds the configured HTTP address (port 0 picks a free one).
    pub async fn bind(&self) -> anyhow::Result<TcpListener> {
        let addr = self.settings.http.listen;
        TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} ([http] listen); is another process using it?"))
    }

    /// Catches up to the mirror node's head once (`run --once`).
    pub async fn run_once(&self, cancel: &CancellationToken) -> anyhow::Result<CatchUp> {
        let result = self.poller.catch_up(cancel).await;
        self.store.close().await;
        Ok(result?)
    }

    /// Polls and serves until `cancel` fires (exit 0) or a component dies (error).
    pub async fn run_until_stopped(self, listener: TcpListener, cancel: CancellationToken) -> anyhow::Result<()> {
        let addr: SocketAddr = listener.local_addr()?;
        let app = router(self.api.clone(), &self.settings.http.cors_allowed_origins);
        let server_cancel = cancel.clone();
        let mut server = tokio::spawn(crate::http::serve(listener, app, server_cancel));
        let poller = self.poller.clone();
        let poller_cancel = cancel.clone();
        let mut polling = tokio::spawn(async move { poller.run(poller_cancel).await });
        info!(%addr, contract = %self.settings.mirror.contract, "serving");
        notify(&[sd_notify::NotifyState::Ready]);
        let watchdog = spawn_watchdog(cancel.clone());

        // `biased`: once the token fires, the server's graceful shutdown (and the poller) may
        // finish at the same instant; an unbiased select could pick their branch and report a
        // clean SIGTERM as "stopped unexpectedly". A handle consumed here must not be awaited
        // again below ("JoinHandle polled after completion" panics, exiting 101), hence the flags.
        let (mut server_done, mut polling_done) = (false, false);
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => Ok(()),
            r = &mut server => {
                server_done = true;
                match r {
                    Ok(()) => Err(anyhow::anyhow!("the HTTP server stopped unexpectedly")),
                    Err(e) => Err(anyhow::Error::new(e).context("the HTTP server task panicked")),
                }
            },
            r = &mut polling => {
                polling_done = true;
                match r {
                    Ok(()) => Err(anyhow::anyhow!("the poller stopped unexpectedly")),
                    Err(e) => Err(anyhow::Error::new(e).context("the poller task panicked")),
                }
            },
        };
        notify(&[sd_notify::NotifyState::Stopping]);
        cancel.cancel();
        // The poller stops at its next await point; a page being committed finishes first.
        let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
            if !polling_done {
                let _ = (&mut polling).await;
            }
            if !server_done {
                let _ = (&mut server).await;
            }
        })
        .await;
        if drained.is_err() {
            warn!("shutdown deadline reached; closing open connections");
            server.abort();
            polling.abort();
        }
        if let Some(w) = watchdog {
            w.abort();
        }
        self.store.close().await;
        info!("stopped");
        outcome
    }
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, states)
    {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// Pings systemd's watchdog at half its interval, when one is configured.
fn spawn_watchdog(cancel: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = Duration::from_micros(usec) / 2;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => notify(&[sd_notify::NotifyState::Watchdog]),
            }
        }
    }))
}
