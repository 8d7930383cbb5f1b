//! The cluster panel's worker: kube-rs is async, so a thread of its own
//! owns a tokio runtime and runs the UI's commands one after the other,
//! answering with events. The UI only sends and polls; it never awaits.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryIter};
use kubevision_cluster::{
    Connection, DeployValues, Error, NodeInfo, ObjectRef, Progress, Release, ReleaseStatus,
};

/// The release the kiosk manages: the CLI's defaults (`kubevision cluster
/// … --release kubevision --namespace kubevision`), so both see the same one.
pub const RELEASE: &str = "kubevision";
pub const NAMESPACE: &str = "kubevision";
/// How long a rollout may take (image pulls on a fresh GPU node are slow).
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long registration waits for cert-manager to issue the certificate.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(180);
/// What a kiosk may do at the plant service: sign people in (and report
/// the outcomes), follow the plant gallery, and enrol.
pub const KIOSK_SCOPES: [&str; 3] = ["identify", "sync", "enrol"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Kubeconfig(PathBuf),
    Rancher {
        url: String,
        token: String,
        cluster: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Connect(Target),
    /// Nodes and the release's status again.
    Refresh,
    /// Install or upgrade, then follow the rollout until ready.
    Deploy {
        gpu: bool,
    },
    Remove {
        delete_gallery: bool,
    },
    /// Registers this kiosk as `name` (its certificate, its identity and
    /// the plant's PIN pepper) and writes its files into `dir`.
    Register {
        name: String,
        dir: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub enum Event {
    Nodes(Vec<NodeInfo>),
    Status(ReleaseStatus),
    Progress(Progress),
    Removed(Vec<ObjectRef>),
    /// The kiosk is registered: its certificate, key, CA and the plant
    /// pepper were written (in `kubevision_cluster::register::FILES` order).
    Registered {
        name: String,
        files: Vec<PathBuf>,
    },
    /// A command failed; the error in plain words.
    Failed(String),
    /// The command is finished, whatever came of it.
    Done,
}

pub struct ClusterWorker {
    commands: Sender<Command>,
    events: Receiver<Event>,
}

impl ClusterWorker {
    /// `wake` runs after every event (the UI's repaint). The thread ends
    /// when the worker is dropped, after the command under way.
    pub fn start(wake: impl Fn() + Send + 'static) -> Self {
        let (commands, inbox) = crossbeam_channel::unbounded();
        let (outbox, events) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name("cluster".into())
            .spawn(move || run(&inbox, &Outbox { tx: outbox, wake }))
            .expect("spawn the cluster worker thread");
        ClusterWorker { commands, events }
    }

    pub fn send(&self, command: Command) {
        // Only fails once the thread is gone, and then nobody is left to tell.
        let _ = self.commands.send(command);
    }

    pub fn events(&self) -> TryIter<'_, Event> {
        self.events.try_iter()
    }
}

struct Outbox<W> {
    tx: Sender<Event>,
    wake: W,
}

impl<W: Fn()> Outbox<W> {
    fn send(&self, event: Event) {
        let _ = self.tx.send(event);
        (self.wake)();
    }
}

fn run<W: Fn()>(inbox: &Receiver<Command>, out: &Outbox<W>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let release = Release {
        name: RELEASE.into(),
        namespace: NAMESPACE.into(),
    };
    let mut conn: Option<Connection> = None;
    for command in inbox {
        let result = match &runtime {
            Ok(rt) => rt
                .block_on(execute(command, &mut conn, &release, out))
                .map_err(|e| e.to_string()),
            // Every command still gets its answer, so the panel never waits forever.
            Err(e) => Err(format!("cannot start the cluster worker: {e}")),
        };
        if let Err(e) = result {
            out.send(Event::Failed(e));
        }
        out.send(Event::Done);
    }
}

/// Why a command failed: the cluster's words, or no connection yet.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("not connected: connect to a cluster first")]
    NotConnected,
    #[error(transparent)]
    Cluster(#[from] Error),
}

async fn execute<W: Fn()>(
    command: Command,
    conn: &mut Option<Connection>,
    release: &Release,
    out: &Outbox<W>,
) -> Result<(), Failed> {
    match command {
        Command::Connect(target) => {
            *conn = None;
            let connected = match target {
                Target::Kubeconfig(path) => Connection::from_kubeconfig(&path, None).await?,
                Target::Rancher {
                    url,
                    token,
                    cluster,
                } => Connection::via_rancher(&url, &token, &cluster, None).await?,
            };
            refresh(conn.insert(connected), release, out).await
        }
        Command::Refresh => refresh(connected(conn)?, release, out).await,
        Command::Deploy { gpu } => {
            let conn = connected(conn)?;
            // The plant profile: kiosk CA through cert-manager, mTLS, only
            // registered kiosks let in (the chart refuses an open gallery).
            let values = DeployValues::for_plant(
                &release.name,
                &release.namespace,
                &format!("gpu: {{enabled: {gpu}}}"),
            )?;
            kubevision_cluster::deploy(conn, &values).await?;
            let rolled = kubevision_cluster::rollout(conn, release, ROLLOUT_TIMEOUT, |p| {
                out.send(Event::Progress(p.clone()))
            })
            .await;
            // The status explains a failed rollout too (the pods' failures).
            let status = kubevision_cluster::status(conn, release).await?;
            out.send(Event::Status(status));
            rolled?;
            Ok(())
        }
        Command::Register { name, dir } => {
            let conn = connected(conn)?;
            let credentials = kubevision_cluster::register_kiosk(
                conn,
                release,
                &name,
                &KIOSK_SCOPES,
                REGISTRATION_TIMEOUT,
            )
            .await?;
            let files = credentials.write_to(&dir)?;
            out.send(Event::Registered { name, files });
            Ok(())
        }
        Command::Remove { delete_gallery } => {
            let conn = connected(conn)?;
            let deleted = kubevision_cluster::remove(conn, release, delete_gallery).await?;
            out.send(Event::Removed(deleted));
            let status = kubevision_cluster::status(conn, release).await?;
            out.send(Event::Status(status));
            Ok(())
        }
    }
}

fn connected(conn: &Option<Connection>) -> Result<&Connection, Failed> {
    conn.as_ref().ok_or(Failed::NotConnected)
}

async fn refresh<W: Fn()>(
    conn: &Connection,
    release: &Release,
    out: &Outbox<W>,
) -> Result<(), Failed> {
    out.send(Event::Nodes(kubevision_cluster::list_nodes(conn).await?));
    out.send(Event::Status(
        kubevision_cluster::status(conn, release).await?,
    ));
    Ok(())
}
