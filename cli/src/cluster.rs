//! `kubevision cluster`: the offload service on the plant's k3s cluster,
//! through `kubevision-cluster` (kube-rs; kubeconfig or Rancher).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kubevision_cluster::{self as cluster, Connection, DeployValues, Progress, Release};

#[derive(Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// The release (the chart's release name).
    #[arg(long, default_value = "kubevision", global = true)]
    release: String,
    #[arg(long, default_value = "kubevision", global = true)]
    namespace: String,
    #[command(subcommand)]
    action: Action,
}

/// A kubeconfig file, or Rancher's API for the downstream cluster.
#[derive(Args)]
struct ConnectionArgs {
    #[arg(
        long,
        env = "KUBECONFIG",
        global = true,
        conflicts_with = "rancher_url"
    )]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Rancher's server URL, e.g. https://rancher.plant.example
    #[arg(
        long,
        env = "KUBEVISION_RANCHER_URL",
        global = true,
        requires = "rancher_cluster"
    )]
    rancher_url: Option<String>,
    /// A Rancher API token (prefer the environment variable).
    #[arg(
        long,
        env = "KUBEVISION_RANCHER_TOKEN",
        global = true,
        hide_env_values = true
    )]
    rancher_token: Option<String>,
    /// The downstream cluster's name or id in Rancher.
    #[arg(long, env = "KUBEVISION_RANCHER_CLUSTER", global = true)]
    rancher_cluster: Option<String>,
    /// CA certificate of Rancher's server, when it is not publicly trusted.
    #[arg(long, global = true)]
    rancher_ca: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Action {
    /// Nodes with their `hardware` label, GPUs and readiness; the release's state.
    Status,
    /// Install the offload service and follow the rollout until it is ready.
    Deploy(DeployArgs),
    /// Apply changed values or a new version to an installed release.
    Upgrade(DeployArgs),
    /// Remove the release; its gallery volumes stay unless asked otherwise.
    Remove {
        /// Also delete the gallery volumes (every enrolment on the cluster).
        #[arg(long)]
        delete_gallery: bool,
    },
    /// Register a kiosk: its client certificate from the release's kiosk CA,
    /// its identity and scopes, and the plant PIN pepper, written to --out.
    RegisterKiosk(RegisterArgs),
    /// Remove a kiosk's identity and certificate (it is refused within seconds).
    UnregisterKiosk {
        /// The kiosk's identity name.
        name: String,
    },
}

#[derive(Args)]
struct RegisterArgs {
    /// The kiosk's identity name, also its certificate's common name
    /// (lowercase letters, digits and '-', e.g. kiosk-line-3).
    name: String,
    /// What the kiosk may do: identify, sync, enrol (admin: everything).
    #[arg(long, value_delimiter = ',', default_value = "identify,sync")]
    scopes: Vec<String>,
    /// The kiosk's secrets folder: tls.crt, tls.key, ca.crt and
    /// plant-pepper.key are written there (0600; the folder 0700).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How long to wait for cert-manager to issue the certificate.
    #[arg(long, default_value = "120", value_name = "SECONDS")]
    timeout: u64,
}

#[derive(Args)]
struct DeployArgs {
    /// A values file for the chart (as for `helm install -f`).
    #[arg(long)]
    values: Option<PathBuf>,
    /// How long to wait for the rollout.
    #[arg(long, default_value = "300", value_name = "SECONDS")]
    timeout: u64,
    /// Deploy the chart's own defaults under --values, without the plant
    /// profile (kiosk CA through cert-manager, TLS with client
    /// certificates): the values must then give credentials, or
    /// auth.allowUnauthenticated=true for a trial.
    #[arg(long)]
    chart_defaults: bool,
}

pub fn run(args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let conn = connect(&args.connection).await?;
    let release = Release {
        name: args.release.clone(),
        namespace: args.namespace.clone(),
    };
    match &args.action {
        Action::Status => status(&conn, &release).await,
        Action::Deploy(d) => deploy(&conn, &release, d, false).await,
        Action::Upgrade(d) => deploy(&conn, &release, d, true).await,
        Action::Remove { delete_gallery } => {
            let removed = cluster::remove(&conn, &release, *delete_gallery).await?;
            for object in &removed {
                println!("removed {object}");
            }
            if !delete_gallery {
                println!(
                    "gallery volumes kept: a new deploy of release {} finds its enrolments again",
                    release.name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::RegisterKiosk(r) => register(&conn, &release, r).await,
        Action::UnregisterKiosk { name } => {
            let removed = cluster::unregister_kiosk(&conn, &release, name).await?;
            if removed.is_empty() {
                println!(
                    "kiosk {name} was not registered with release {}",
                    release.name
                );
            }
            for object in &removed {
                println!("removed {object}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn register(
    conn: &Connection,
    release: &Release,
    args: &RegisterArgs,
) -> anyhow::Result<ExitCode> {
    let creds = cluster::register_kiosk(
        conn,
        release,
        &args.name,
        &args.scopes,
        Duration::from_secs(args.timeout),
    )
    .await?;
    let written = creds.write_to(&args.out)?;
    println!(
        "registered kiosk {} ({}) with release {}: Certificate {}, identity in Secret {}",
        creds.name,
        creds.scopes.join(", "),
        release.name,
        creds.certificate.name,
        creds.identities_secret
    );
    if creds.pepper_created {
        println!("created the plant PIN pepper (the first kiosk of this release)");
    }
    if let Some(id) = kubevision_kiosk_store::plant_pepper_id(&creds.plant_pepper) {
        println!(
            "plant PIN pepper key id: {id} (give it to the service: the chart's auth.plantPepperId, or KUBEVISION_PLANT_PEPPER_ID)"
        );
    }
    for path in written {
        println!("wrote {}", path.display());
    }
    println!("the service lets the kiosk in within seconds, without a restart");
    Ok(ExitCode::SUCCESS)
}

async fn connect(c: &ConnectionArgs) -> anyhow::Result<Connection> {
    Ok(match (&c.rancher_url, &c.kubeconfig) {
        (Some(url), _) => {
            let token = c.rancher_token.as_deref().context("--rancher-url needs an API token (KUBEVISION_RANCHER_TOKEN)")?;
            let name = c.rancher_cluster.as_deref().context("--rancher-url needs --rancher-cluster")?;
            Connection::via_rancher(url, token, name, c.rancher_ca.clone()).await?
        }
        (None, Some(path)) => Connection::from_kubeconfig(path, c.context.as_deref()).await?,
        (None, None) => bail!("say how to reach the cluster: --kubeconfig FILE, or --rancher-url with a token and cluster"),
    })
}

async fn status(conn: &Connection, release: &Release) -> anyhow::Result<ExitCode> {
    let nodes = cluster::list_nodes(conn).await?;
    println!(
        "{:<24} {:<9} {:>4} {:<6} gpu taint",
        "node", "hardware", "GPUs", "ready"
    );
    for n in nodes {
        println!(
            "{:<24} {:<9} {:>4} {:<6} {}",
            n.name,
            n.hardware.as_deref().unwrap_or("-"),
            n.gpus,
            if n.ready { "yes" } else { "NO" },
            if n.tainted_gpu { "yes" } else { "-" }
        );
    }
    let s = cluster::status(conn, release).await?;
    if s.objects.is_empty() {
        println!(
            "\nrelease {} is not deployed in namespace {}",
            release.name, release.namespace
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "\nrelease {}: {}/{} replicas ready{}",
        release.name,
        s.ready,
        s.desired,
        if s.rolled_out { ", rolled out" } else { "" }
    );
    if let Some(endpoint) = &s.endpoint {
        println!("endpoint: {endpoint}");
    }
    for f in &s.failures {
        println!("problem: {f}");
    }
    Ok(if s.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn deploy(
    conn: &Connection,
    release: &Release,
    args: &DeployArgs,
    upgrade: bool,
) -> anyhow::Result<ExitCode> {
    let installed = !cluster::status(conn, release).await?.objects.is_empty();
    if upgrade && !installed {
        bail!(
            "release {} is not deployed in namespace {}: use `kubevision cluster deploy`",
            release.name,
            release.namespace
        );
    }
    let yaml = match &args.values {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => String::new(),
    };
    // The plant profile unless asked otherwise: kiosks are then registered
    // with `register-kiosk`.
    let values = if args.chart_defaults {
        DeployValues::new(&release.name, &release.namespace, &yaml)?
    } else {
        DeployValues::for_plant(&release.name, &release.namespace, &yaml)?
    };
    let deployment = cluster::deploy(conn, &values).await?;
    eprintln!(
        "applied {} objects as field manager {}",
        deployment.objects.len(),
        cluster::FIELD_MANAGER
    );
    let done = cluster::rollout(
        conn,
        release,
        Duration::from_secs(args.timeout),
        progress_bar,
    )
    .await;
    eprintln!();
    done?;
    match deployment.endpoint {
        Some(endpoint) => println!("ready: point the kiosks' offload endpoint at {endpoint}"),
        None => println!("ready"),
    }
    if values.chart.auth.kiosk_ca.cert_manager {
        println!(
            "register each kiosk: kubevision cluster register-kiosk NAME --scopes identify,sync --out DIR"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `[#####-----] 1/2 message` on one terminal line.
fn progress_bar(p: &Progress) {
    const WIDTH: usize = 20;
    let filled = if p.desired > 0 {
        (p.ready.max(0) as usize * WIDTH) / p.desired as usize
    } else {
        0
    };
    let bar = format!(
        "{}{}",
        "#".repeat(filled.min(WIDTH)),
        "-".repeat(WIDTH - filled.min(WIDTH))
    );
    eprint!(
        "\r[{bar}] {}/{} {:<60}",
        p.ready,
        p.desired,
        p.message.chars().take(60).collect::<String>()
    );
    let _ = std::io::stderr().flush();
}
