//! The `vhost-dax` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use vhost_dax::config::{
    ConfigError, DaemonConfig, FsRequest, Origin, PmemRequest, Sandbox, Seccomp,
};
use vhost_dax::daemon;

/// vhost-user backend for virtio-pmem and virtio-fs.
#[derive(Debug, Parser)]
#[command(name = "vhost-dax", version, about)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log to the system log (/dev/log, facility daemon) instead of stderr.
    #[arg(long, global = true)]
    syslog: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one virtio-pmem device backed by a file or block device.
    Pmem(PmemArgs),
    /// Share a host directory with a guest over virtio-fs.
    Fs(Box<FsArgs>),
    /// Serve every device of a config file.
    Run {
        /// TOML config file (see configs/).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Measure FUSE, pmem and the ledger on an embedded default (temporary files, the
    /// daemon as a child, our frontend on a real socket), side by side with virtiofsd.
    Bench {
        /// Shorter run (under 15 s).
        #[arg(long)]
        quick: bool,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write the JSON object to FILE (the table still goes to stdout).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// An earlier run's JSON: print each figure's change against it.
        #[arg(long, value_name = "FILE")]
        baseline: Option<PathBuf>,
        /// Write an SVG bar chart of the ratios (vs virtiofsd, DAX vs FUSE) to FILE.
        #[arg(long, value_name = "FILE")]
        chart: Option<PathBuf>,
        /// Peer to run the FUSE workloads against too: virtiofsd[=PATH], or none
        /// (default: virtiofsd if found on PATH, $CARGO_HOME/bin or /usr/libexec).
        #[arg(long, value_name = "PEER", default_value = "auto")]
        peer: vhost_dax::bench::PeerChoice,
        /// Largest LOOKUP count of the scale section: 10000, 100000 or 1000000 (default:
        /// 100000, 10000 with --quick; 1000000 builds a million files first).
        #[arg(long, value_name = "N", value_parser = parse_scale)]
        scale: Option<vhost_dax::bench::ScaleSizes>,
    },
    /// Validate a config file and exit.
    CheckConfig {
        /// TOML config file.
        file: PathBuf,
    },
    /// Ask a running fs device for its counters over its control socket (FUSE requests,
    /// errors and latency by queue and opcode; the DAX window's counters).
    Stats {
        /// The device's control socket (`--control-socket`, `control_socket`).
        control_socket: PathBuf,
        /// Prometheus text format (e.g. for node_exporter's textfile collector).
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
        /// The answer as the control socket gave it (one JSON object).
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (e.g. `vhost-dax completions bash >
    /// /usr/share/bash-completion/completions/vhost-dax`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (vhost-dax.1 and one per subcommand) into DIR.
    Manpages {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct PmemArgs {
    /// vhost-user socket to listen on.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Give the socket file to this group, mode 0660.
    #[arg(long, value_name = "NAME")]
    socket_group: Option<String>,
    /// Backing file or block device.
    #[arg(long, value_name = "PATH")]
    file: PathBuf,
    /// Device size (K/M/G suffixes, a multiple of 2M); default: the file's size.
    #[arg(long, value_name = "SIZE")]
    size: Option<String>,
    /// Create the file (sparse, at --size) if it does not exist.
    #[arg(long)]
    create: bool,
    /// Map the region read-only; FLUSH succeeds without a sync.
    #[arg(long)]
    readonly: bool,
    /// After a disconnect, reset the device and wait for the next frontend.
    #[arg(long)]
    reconnect: bool,
    /// Also advertise SHMEM as protocol bit 21 (alioth before mid-2026).
    #[arg(long)]
    shmem_bit21: bool,
    /// Unix socket for the JSON control protocol: flush and sync counters (`vhost-dax
    /// stats`), DMA pins on the region.
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// What the seccomp filter does to a system call off the daemon's allow-list: kill
    /// the process, log it (and allow it), trap (SIGSYS), or none (no filter).
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = Seccomp::DEFAULT)]
    seccomp: Seccomp,
}

#[derive(Debug, clap::Args)]
struct FsArgs {
    /// vhost-user socket to listen on.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Give the socket file to this group, mode 0660.
    #[arg(long, value_name = "NAME")]
    socket_group: Option<String>,
    /// Directory to share.
    #[arg(long, value_name = "DIR")]
    shared_dir: PathBuf,
    /// Mount tag the guest uses (1 to 36 bytes), served in the device's config space.
    /// Needed with QEMU's generic vhost-user-test-device-pci; QEMU's vhost-user-fs-pci
    /// and cloud-hypervisor set the tag themselves.
    #[arg(long)]
    tag: Option<String>,
    /// Number of request queues.
    #[arg(long, default_value_t = 1)]
    queues: usize,
    /// Guest caching: never, auto, always or metadata (as virtiofsd).
    #[arg(long, value_name = "POLICY", default_value = "auto")]
    cache: String,
    /// Refuse every modification with EROFS.
    #[arg(long)]
    readonly: bool,
    /// Serve extended attributes.
    #[arg(long)]
    xattr: bool,
    /// Map xattr names between guest and host, in virtiofsd's rule syntax (e.g.
    /// ':map:trusted.:user.virtiofs.:'); needs --xattr.
    #[arg(long, value_name = "RULES")]
    xattrmap: Option<String>,
    /// Let the guest use a writeback cache.
    #[arg(long)]
    writeback: bool,
    /// Let the guest create character and block device nodes.
    #[arg(long)]
    allow_devices: bool,
    /// Confinement: chroot, namespace or none (default: chroot as root, none otherwise).
    #[arg(long, value_enum)]
    sandbox: Option<Sandbox>,
    /// After a disconnect, wait for the next frontend instead of exiting.
    #[arg(long)]
    reconnect: bool,
    /// DAX window size (K/M/G, a multiple of 2 MiB); 0 or absent: no DAX.
    #[arg(long, value_name = "SIZE")]
    dax_window: Option<String>,
    /// Which files use DAX: always (every regular file), inode (files the host marks
    /// DAX), never (no window).
    #[arg(long, value_name = "POLICY")]
    dax: Option<String>,
    /// How long a release waits for pins to drain before failing with EBUSY (e.g. 10s, 500ms).
    #[arg(long, value_name = "DURATION")]
    pin_wait_budget: Option<String>,
    /// Unix socket for the JSON control protocol: FUSE counters (`vhost-dax stats`); with
    /// a window also DMA pins, mappings and the ledger's counters.
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// Also advertise SHMEM as protocol bit 21 (alioth before mid-2026); needs a window.
    #[arg(long)]
    shmem_bit21: bool,
    /// The frontend maps only whole pages inside a file (QEMU 11.1): files whose size is
    /// not a multiple of 4 KiB are served without DAX. Learnt from the first refused map
    /// when absent; needs a window.
    #[arg(long)]
    dax_maps_within_file: bool,
    /// Worker threads serving the request queues' requests, so a slow one holds up no
    /// other (virtiofsd's flag); 0: each queue's requests are served on its own thread.
    #[arg(long, value_name = "N", default_value_t = 0)]
    thread_pool_size: usize,
    /// Change the capabilities kept when running as root, virtiofsd's syntax: e.g.
    /// `+sys_admin:-mknod` (default kept: chown, dac_override, fowner, fsetid, setgid,
    /// setuid, mknod, setfcap).
    #[arg(long, value_name = "(+|-)CAP:...", allow_hyphen_values = true)]
    modcaps: Option<String>,
    /// How inodes the guest knows are held: never (an O_PATH descriptor each), prefer
    /// (by file handle where the filesystem has them), mandatory (by file handle, or the
    /// start fails). Handles need root with CAP_DAC_READ_SEARCH (virtiofsd's flag).
    #[arg(long, value_name = "MODE")]
    inode_file_handles: Option<String>,
    /// Most inodes (nodes) the guest may know at once; past it LOOKUP and creations get
    /// ENFILE [default: 1000000].
    #[arg(long, value_name = "N")]
    max_inodes: Option<u64>,
    /// Most files and directories the guest may hold open at once; past it OPEN,
    /// OPENDIR and CREATE get ENFILE [default: 1000000].
    #[arg(long, value_name = "N")]
    max_open_handles: Option<u64>,
    /// What the seccomp filter does to a system call off the daemon's allow-list: kill
    /// the process, log it (and allow it), trap (SIGSYS), or none (no filter).
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = Seccomp::DEFAULT)]
    seccomp: Seccomp,
}

impl FsArgs {
    fn request(&self) -> FsRequest {
        FsRequest {
            socket: Some(self.socket.clone()),
            socket_group: self.socket_group.clone(),
            shared_dir: Some(self.shared_dir.clone()),
            tag: self.tag.clone(),
            queues: Some(self.queues),
            cache: Some(self.cache.clone()),
            readonly: self.readonly,
            xattr: self.xattr,
            xattrmap: self.xattrmap.clone(),
            writeback: self.writeback,
            allow_devices: self.allow_devices,
            sandbox: self.sandbox.map(|s| s.to_string()),
            reconnect: self.reconnect,
            dax_window: self.dax_window.clone(),
            dax: self.dax.clone(),
            pin_wait_budget: self.pin_wait_budget.clone(),
            control_socket: self.control_socket.clone(),
            shmem_bit21: self.shmem_bit21,
            dax_maps_within_file: self.dax_maps_within_file,
            thread_pool_size: Some(self.thread_pool_size),
            modcaps: self.modcaps.clone(),
            inode_file_handles: self.inode_file_handles.clone(),
            max_inodes: self.max_inodes,
            max_open_handles: self.max_open_handles,
            ..FsRequest::default()
        }
    }
}

impl PmemArgs {
    fn request(&self) -> PmemRequest {
        PmemRequest {
            socket: Some(self.socket.clone()),
            socket_group: self.socket_group.clone(),
            file: Some(self.file.clone()),
            size: self.size.clone(),
            create: self.create,
            readonly: self.readonly,
            reconnect: self.reconnect,
            shmem_bit21: self.shmem_bit21,
            control_socket: self.control_socket.clone(),
        }
    }
}

fn init_logging(level: Option<&str>, syslog: bool) -> Result<(), ConfigError> {
    let level = match level {
        Some(text) => text.parse::<log::LevelFilter>().map_err(|_| ConfigError {
            field: "--log-level".into(),
            reason: format!("`{text}` is not one of off, error, warn, info, debug, trace"),
        })?,
        None => log::LevelFilter::Info,
    };
    vhost_dax::logging::init("vhost-dax", level, syslog);
    Ok(())
}

/// `--seccomp`, if this architecture can have it.
fn cli_seccomp(seccomp: Seccomp) -> Result<Seccomp, ConfigError> {
    seccomp.check_architecture().map_err(|reason| ConfigError {
        field: "--seccomp".into(),
        reason,
    })?;
    Ok(seccomp)
}

fn config_error(e: ConfigError) -> ExitCode {
    eprintln!("vhost-dax: error: {e}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("vhost-dax: {}", usage_error_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command, "vhost-dax", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not an error of ours.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            return ExitCode::SUCCESS;
        }
        Command::Manpages { dir } => return manpages(dir),
        Command::Stats {
            control_socket,
            prometheus,
            json,
        } => return stats(control_socket, *prometheus, *json),
        _ => {}
    }
    if let Command::Bench {
        quick,
        json,
        peer,
        scale,
        output,
        baseline,
        chart,
    } = cli.command
    {
        let outputs = BenchOutputs {
            json,
            output,
            baseline,
            chart,
        };
        let options = vhost_dax::bench::BenchOptions { quick, peer, scale };
        return bench(options, outputs, cli.log_level.as_deref());
    }
    let config = match &cli.command {
        Command::Bench { .. }
        | Command::Completions { .. }
        | Command::Manpages { .. }
        | Command::Stats { .. } => {
            unreachable!("handled above")
        }
        Command::Pmem(args) => args.request().validate(Origin::Cli).and_then(|pmem| {
            Ok(DaemonConfig {
                log_level: None,
                pmem: vec![pmem],
                fs: Vec::new(),
                seccomp: cli_seccomp(args.seccomp)?,
            })
        }),
        Command::Fs(args) => args.request().validate(Origin::Cli).and_then(|fs| {
            Ok(DaemonConfig {
                log_level: None,
                pmem: Vec::new(),
                fs: vec![fs],
                seccomp: cli_seccomp(args.seccomp)?,
            })
        }),
        Command::Run { config } | Command::CheckConfig { file: config } => {
            DaemonConfig::load(config)
        }
    };
    let config = match config {
        Ok(config) => config,
        Err(e) => return config_error(e),
    };
    let level = cli.log_level.as_deref().or(config.log_level.as_deref());
    if let Err(e) = init_logging(level, cli.syslog) {
        return config_error(e);
    }
    if let Command::CheckConfig { file } = &cli.command {
        println!(
            "{}: ok ({} pmem and {} fs device(s))",
            file.display(),
            config.pmem.len(),
            config.fs.len()
        );
        return ExitCode::SUCCESS;
    }
    raise_open_files_limit();
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("vhost-dax: {e}");
            ExitCode::FAILURE
        }
    }
}

/// clap's error as one line that still names what is wrong: its first line and the lines
/// that detail it (a missing argument's name), without the usage and help hints.
fn usage_error_line(rendered: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.is_empty() && !parts.is_empty() {
            break;
        }
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.trim_start_matches("error: "));
        }
    }
    if parts.is_empty() {
        return "invalid arguments".into();
    }
    parts.join(" ")
}

/// With `--inode-file-handles never` (the default) every inode the guest knows holds a
/// descriptor: the usual soft limit of 1024 would end a session after about a thousand
/// LOOKUPs.
fn raise_open_files_limit() {
    match vhost_dax::sys::raise_open_files_limit() {
        Ok(n) if n < 8192 => log::warn!(
            "open files limited to {n} (the hard limit): a guest that knows more inodes \
             gets EMFILE unless they are held by file handle (--inode-file-handles \
             prefer); raise it (e.g. LimitNOFILE=) for large shares"
        ),
        Ok(n) => log::info!("open files limit: {n}"),
        Err(e) => log::warn!("cannot raise the open files limit: {e}"),
    }
}

/// `--scale N` of `bench`.
fn parse_scale(text: &str) -> Result<vhost_dax::bench::ScaleSizes, String> {
    vhost_dax::bench::ScaleSizes::parse(text).map_err(|e| e.to_string())
}

/// `vhost-dax stats`: one `stats` request on a control socket, printed.
fn stats(control: &std::path::Path, prometheus: bool, json: bool) -> ExitCode {
    use vhost_dax::control::client::ControlClient;
    let answer = ControlClient::connect(control, std::time::Duration::from_secs(5))
        .and_then(|mut client| client.call(r#"{"op":"stats"}"#));
    match answer {
        Ok(answer) if json => println!("{answer}"),
        Ok(answer) if prometheus => print!(
            "{}",
            vhost_dax::control::render::prometheus(&answer, &control.display().to_string())
        ),
        Ok(answer) => print!("{}", vhost_dax::control::render::human(&answer)),
        Err(e) => {
            eprintln!("vhost-dax: stats: {}: {e}", control.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// vhost-dax.1 and vhost-dax-SUBCOMMAND.1 for each subcommand, rendered from the CLI.
fn manpages(dir: &std::path::Path) -> ExitCode {
    let write = |name: &str, command: clap::Command| -> std::io::Result<()> {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::fs::write(dir.join(format!("{name}.1")), page)
    };
    let command = Cli::command();
    let result = std::fs::create_dir_all(dir).and_then(|()| {
        for sub in command.get_subcommands() {
            let name = format!("vhost-dax-{}", sub.get_name());
            write(
                &name,
                sub.clone()
                    .display_name(name.clone())
                    .bin_name(name.clone()),
            )?;
        }
        write("vhost-dax", command.clone())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vhost-dax: manpages: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

/// Where `bench` puts its report besides the table.
struct BenchOutputs {
    json: bool,
    output: Option<PathBuf>,
    baseline: Option<PathBuf>,
    chart: Option<PathBuf>,
}

fn bench(
    options: vhost_dax::bench::BenchOptions,
    outputs: BenchOutputs,
    log_level: Option<&str>,
) -> ExitCode {
    if let Err(e) = init_logging(Some(log_level.unwrap_or("warn")), false) {
        return config_error(e);
    }
    // A baseline that cannot be used is known before a minute of measuring.
    let baseline = match outputs
        .baseline
        .as_deref()
        .map(vhost_dax::bench::Baseline::load)
    {
        Some(Err(e)) => {
            eprintln!("vhost-dax: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(b)) => Some(b),
        None => None,
    };
    // The daemons the bench starts inherit the limit.
    raise_open_files_limit();
    let report = match vhost_dax::bench::run(options, &mut |step| eprintln!("bench: {step}")) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("vhost-dax: bench failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = vhost_dax::bench::json(&report);
    if outputs.json {
        println!("{json}");
    } else {
        print!("{}", vhost_dax::bench::table(&report));
    }
    if let Some(baseline) = &baseline {
        let comparison = vhost_dax::bench::compare(&report, baseline);
        // With --json, stdout is the one JSON object.
        if outputs.json {
            eprint!("{comparison}");
        } else {
            print!("\n{comparison}");
        }
    }
    let mut status = ExitCode::SUCCESS;
    let mut write = |path: &PathBuf, text: String, what: &str| {
        if let Err(e) = std::fs::write(path, text) {
            eprintln!(
                "vhost-dax: bench: cannot write the {what} to {}: {e}",
                path.display()
            );
            status = ExitCode::FAILURE;
        }
    };
    if let Some(path) = &outputs.output {
        let text = serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string());
        write(path, text + "\n", "JSON");
    }
    if let Some(path) = &outputs.chart {
        write(path, vhost_dax::bench::chart_svg(&report), "chart");
    }
    status
}
