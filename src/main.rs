//! `mpsup`: the supervisor (`--config`), its helpers (hidden `__helper <role>`), policy
//! validation (`check-config`) and the control client (`ctl`).

mod helper;
mod logging;

use clap::{Parser, Subcommand};
use logging::LogFormat;
use mpsup_ipc::Role;
use mpsup_supervisor::{exit, HelperCommand, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Removes dead SCSI paths (LOGICAL UNIT NOT SUPPORTED) from dm-multipath hosts, safely, from
/// sandboxed helper processes, with an audit record of every deletion.
#[derive(Parser)]
#[command(name = "mpsup", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Run the daemon with this policy file.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log line format on stderr (default: journald under systemd, plain otherwise).
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a policy file and print the effective policy; exit 0 if valid, 2 if not.
    CheckConfig { file: PathBuf },
    /// Send one command to the running daemon and print the reply.
    Ctl {
        /// Control socket.
        #[arg(long, default_value = "/run/mpsup/mpsup.sock")]
        socket: PathBuf,
        /// Give up after this long.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Command words, e.g. `show paths json`.
        #[arg(required = true, trailing_var_arg = true)]
        words: Vec<String>,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Internal: run as a helper process (started by the supervisor only).
    #[command(name = "__helper", hide = true)]
    Helper {
        role: String,
        /// Fail closed when landlock cannot be fully enforced (policy `sandbox.require_landlock`).
        #[arg(long)]
        require_landlock: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit log; name the first broken line. Exit 0 intact, 1 broken.
    Verify {
        file: PathBuf,
        /// The daemon's head file (STATE_DIR/audit.head), to also detect a cut-off tail.
        #[arg(long)]
        head: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format.unwrap_or_else(LogFormat::detect);
    let level = logging::level_for(cli.verbose);
    let code = match cli.command {
        Some(Command::Helper {
            role,
            require_landlock,
        }) => match role.parse::<Role>() {
            Ok(role) => {
                logging::init(role.as_str(), level, format);
                helper::main(role, require_landlock)
            }
            Err(e) => {
                eprintln!("mpsup: {e}");
                exit::USAGE
            }
        },
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Audit {
            command: AuditCommand::Verify { file, head },
        }) => match mpsup_supervisor::audit::verify(&file, head.as_deref()) {
            Ok(summary) => {
                println!("{summary}");
                exit::OK
            }
            Err(e) => {
                eprintln!("{e}");
                exit::FAILED
            }
        },
        Some(Command::Ctl {
            socket,
            timeout,
            words,
        }) => ctl(&socket, &words.join(" "), timeout),
        None => match cli.config {
            Some(file) => {
                logging::init("supervisor", level, format);
                run(&file, cli.verbose, format)
            }
            None => {
                eprintln!("mpsup: nothing to do: give --config FILE, or a command (see --help)");
                exit::USAGE
            }
        },
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn check_config(file: &std::path::Path) -> i32 {
    match mpsup_policy::load(file) {
        Ok(p) => {
            for w in &p.warnings {
                eprintln!("{}: warning: {w}", file.display());
            }
            print!(
                "# effective policy of {} (sha256 {})\n{}",
                file.display(),
                p.sha256,
                p.to_toml()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("{e}");
            exit::USAGE
        }
    }
}

fn run(file: &std::path::Path, verbose: u8, format: LogFormat) -> i32 {
    let policy = match mpsup_policy::load(file) {
        Ok(p) => p,
        Err(e) => {
            // The same one line as check-config, before anything is forked.
            eprintln!("{e}");
            return exit::USAGE;
        }
    };
    for w in &policy.warnings {
        tracing::warn!("policy: {w}");
    }
    let mut args = vec!["--log-format".to_string(), format.as_arg().to_string()];
    if verbose > 0 {
        args.push(format!("-{}", "v".repeat(verbose as usize)));
    }
    // Read once at start: a SIGHUP reload does not restart helpers, so a changed
    // `sandbox.require_landlock` applies from the next helper (re)start.
    if policy.policy.sandbox.require_landlock {
        args.push("--require-landlock".to_string());
    }
    mpsup_supervisor::run(
        policy,
        RunOptions {
            helper: HelperCommand::current_exe(args),
        },
    )
}

fn ctl(socket: &std::path::Path, command: &str, timeout: Duration) -> i32 {
    use mpsup_listener::client::{request, CtlError};
    match request(socket, command, timeout) {
        Ok(reply) => {
            print!("{reply}");
            if !reply.is_empty() && !reply.ends_with('\n') {
                println!();
            }
            if reply.starts_with("error: ") {
                1
            } else {
                0
            }
        }
        Err(CtlError::Connect(e)) | Err(CtlError::Protocol(e)) => {
            eprintln!("mpsup ctl: {e}");
            2
        }
    }
}
