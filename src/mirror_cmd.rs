//! `gata mirror`: copies every committed lake table version to an object store or a Greenfield
//! bucket (continuously, or one pass with `--once`); `gata greenfield verify`: re-hashes what a
//! target holds against the progress the lake records; `gata greenfield emulator`: a loopback
//! storage provider for trying the Greenfield target locally.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use gata_greenfield::{Account, Address, Emulator, SpClient, SpConfig, Visibility};
use gata_infra::config::GataConfig;
use gata_lakehouse::Lake;
use gata_mirror::{Mirror, MirrorSettings, Target};
use tokio_util::sync::CancellationToken;
use url::Url;

/// Where to mirror, and how to reach it.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// `file:///abs/dir`, `s3://bucket/prefix` (with the lake's storage options and `AWS_*`
    /// variables) or `greenfield://bucket/prefix`.
    #[arg(long)]
    target: Url,
    /// The storage provider of a Greenfield target.
    #[arg(long, default_value = "http://127.0.0.1:9033")]
    sp_endpoint: Url,
    /// The Greenfield account's private key (hex); read from the environment only.
    #[arg(long, env = "GATA_GREENFIELD_PRIVATE_KEY", hide_env_values = true)]
    private_key: Option<String>,
    /// Visibility of objects created on Greenfield.
    #[arg(long, value_enum, default_value_t = VisibilityArg::Private)]
    visibility: VisibilityArg,
    /// Attempts after the first for a failed provider request.
    #[arg(long, default_value_t = 4)]
    retries: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum VisibilityArg {
    Private,
    PublicRead,
}

/// `gata mirror` options.
#[derive(Debug, Clone, Args)]
pub struct MirrorArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// One pass over every table, then exit.
    #[arg(long)]
    once: bool,
    /// Time between passes.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    interval: Duration,
    /// Bytes per second sent to the target (0: unlimited).
    #[arg(long, default_value_t = 0)]
    rate_limit: u64,
    /// Table versions per table and pass.
    #[arg(long, default_value_t = 100)]
    versions_per_pass: i64,
    #[command(flatten)]
    pub flags: crate::Flags,
}

/// `gata greenfield` options.
#[derive(Debug, Clone, Args)]
pub struct GreenfieldArgs {
    #[command(subcommand)]
    op: GreenfieldOp,
    #[command(flatten)]
    pub flags: crate::Flags,
}

#[derive(Debug, Clone, Subcommand)]
enum GreenfieldOp {
    /// Re-hashes every object the lake records as mirrored to the target, and every submission
    /// record's rows; exits 1 on any difference.
    Verify {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Runs a loopback storage-provider emulator (signatures, checksums, permissions enforced).
    Emulator {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:9033")]
        listen: SocketAddr,
        /// A bucket to create, as `name=0xOwnerAddress`; repeatable.
        #[arg(long = "bucket", value_parser = parse_bucket)]
        buckets: Vec<(String, Address)>,
    },
}

fn parse_bucket(s: &str) -> Result<(String, Address), String> {
    let (name, owner) = s.split_once('=').ok_or("expected name=0xOwnerAddress")?;
    Ok((name.to_string(), owner.parse().map_err(|e: gata_greenfield::GreenfieldError| e.to_string())?))
}

fn target(cfg: &GataConfig, args: &TargetArgs) -> anyhow::Result<Target> {
    if args.target.scheme() != "greenfield" {
        return Ok(Target::store(args.target.clone(), &cfg.lake.storage_options.0)?);
    }
    let key = args.private_key.as_deref().context("a Greenfield target needs GATA_GREENFIELD_PRIVATE_KEY")?;
    let account = Account::from_private_key_hex(key)?;
    let config = SpConfig {
        endpoint: args.sp_endpoint.clone(),
        retries: args.retries,
        backoff: Duration::from_millis(200),
        timeout: Duration::from_secs(120),
    };
    let visibility = match args.visibility {
        VisibilityArg::Private => Visibility::Private,
        VisibilityArg::PublicRead => Visibility::PublicRead,
    };
    Ok(Target::greenfield(args.target.clone(), SpClient::new(config, account)?, visibility)?)
}

fn lake(cfg: &GataConfig) -> anyhow::Result<Lake> {
    Ok(Lake::new(&cfg.lake_uri()?, &cfg.lake.storage_options.0)?)
}

/// Runs `gata mirror`.
pub async fn mirror(cfg: GataConfig, args: MirrorArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let settings = MirrorSettings {
        rate_limit_bytes_per_second: args.rate_limit,
        versions_per_pass: args.versions_per_pass,
        interval: args.interval,
    };
    let registry = prometheus::Registry::new();
    let mut mirror = Mirror::new(lake(&cfg)?, target(&cfg, &args.target)?, settings, &registry).await?;
    if !args.once {
        mirror.run(stop).await;
        return Ok(());
    }
    loop {
        let report = mirror.pass().await?;
        if report.versions.is_empty() {
            break;
        }
        println!(
            "uploaded {} objects ({} bytes), {} already there, {} gone from the lake; versions {:?}",
            report.uploaded, report.bytes, report.present, report.missing, report.versions
        );
    }
    println!("{} is up to date", args.target.target);
    Ok(())
}

/// Runs `gata greenfield`.
pub async fn greenfield(cfg: GataConfig, args: GreenfieldArgs, stop: CancellationToken) -> anyhow::Result<()> {
    match args.op {
        GreenfieldOp::Verify { target: target_args } => {
            let target = target(&cfg, &target_args)?;
            let mut mirror = Mirror::new(
                lake(&cfg)?,
                target.clone(),
                MirrorSettings {
                    rate_limit_bytes_per_second: 0,
                    versions_per_pass: 1,
                    interval: Duration::from_secs(1),
                },
                &prometheus::Registry::new(),
            )
            .await?;
            let entries = mirror.progress().entries(target.url()).await?;
            if entries.is_empty() {
                bail!("the lake records nothing mirrored to {}", target.url());
            }
            let report = gata_mirror::verify(&target, &entries).await?;
            for problem in &report.problems {
                println!("MISMATCH {problem}");
            }
            println!(
                "checked {} objects, {} submission records, {} submissions: {} problems",
                report.objects,
                report.records,
                report.submissions,
                report.problems.len()
            );
            if !report.problems.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        GreenfieldOp::Emulator { listen, buckets } => {
            let operator = Account::from_private_key_hex(&"01".repeat(32))?.address();
            let emulator = Emulator::new(operator);
            for (name, owner) in &buckets {
                emulator.create_bucket(name, *owner);
            }
            let addr = emulator.spawn(listen).await.with_context(|| format!("listening on {listen}"))?;
            println!("storage-provider emulator on http://{addr}; buckets: {buckets:?}");
            stop.cancelled().await;
            Ok(())
        }
    }
}
