//! The supervisor's event loop: helpers' lifecycle, the path table, the purge lifecycle and the
//! audit log. Control commands are in `commands`.

mod commands;

use crate::audit::{AuditLog, Event};
use crate::control_socket::{self, ControlSocket};
use crate::exit;
use crate::helpers::{Helper, HelperState};
use crate::paths::PathTable;
use crate::purge::{Dispatch, PurgeBook};
use crate::render::Stats;
use crate::signals;
use crate::spawn::{spawn_helper, HelperCommand};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use mpsup_ipc::*;
use mpsup_policy::{LoadedPolicy, OnHelperCrash};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

const SIGNAL_TOKEN: Token = Token(0);
/// A helper must say `Ready` this soon after it is started.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Helpers get this long to exit after `Shutdown` before they are killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct RunOptions {
    pub helper: HelperCommand,
}

/// Runs the daemon until it is stopped; returns the process exit code.
pub fn run(policy: LoadedPolicy, opts: RunOptions) -> i32 {
    let mut daemon = match Daemon::start(policy, opts) {
        Ok(d) => d,
        Err(e) => {
            error!("cannot start: {e}");
            return exit::FAILED;
        }
    };
    let code = daemon.event_loop();
    daemon.control.remove(&daemon.policy.policy.daemon.socket);
    info!(code, "supervisor stopped");
    code
}

fn token_of(role: Role) -> Token {
    Token(1 + role as usize)
}

fn role_of(token: Token) -> Option<Role> {
    Role::ALL.into_iter().find(|r| token_of(*r) == token)
}

struct Daemon {
    poll: Poll,
    signals: SignalFd,
    helpers: [Helper; 3],
    policy: LoadedPolicy,
    cmd: HelperCommand,
    control: ControlSocket,
    paths: PathTable,
    audit: AuditLog,
    /// Records that could not be written yet (the log failed); retried before the next one.
    audit_backlog: VecDeque<Event>,
    book: PurgeBook,
    stats: Stats,
    /// Reply chunks waiting for the listener's socket to drain.
    listener_outbox: VecDeque<ToListener>,
    /// Hello deadlines of helpers that are running but have not said `Ready` yet.
    hello_deadline: [Option<Instant>; 3],
    /// Set once a stop has begun: the moment stragglers get SIGKILL.
    stop_deadline: Option<Instant>,
    exit_code: i32,
}

impl Daemon {
    fn start(policy: LoadedPolicy, opts: RunOptions) -> Result<Daemon, String> {
        raise_fd_limit();
        let signals = signals::signal_fd().map_err(|e| format!("signalfd: {e}"))?;
        let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
        poll.registry()
            .register(
                &mut SourceFd(&signals.as_fd().as_raw_fd()),
                SIGNAL_TOKEN,
                Interest::READABLE,
            )
            .map_err(|e| format!("register signalfd: {e}"))?;
        let d = &policy.policy.daemon;
        let (audit, recovered) = AuditLog::open(&d.audit_log, &d.state_dir)?;
        if recovered.torn_bytes > 0 {
            warn!(
                bytes = recovered.torn_bytes,
                "audit log: cut a torn last line left by a crash"
            );
        }
        let mut book = PurgeBook::new(audit.max_id() + 1);
        for intent in &recovered.open_intents {
            match identity_of_record(intent) {
                Some((id, identity)) => {
                    warn!(id, dev = %identity.name, "audit log: intent without outcome; resolving through the purger");
                    book.resume_open_intent(id, identity);
                }
                None => error!(
                    seq = intent.seq,
                    "audit log: open intent without a usable identity; cannot resolve it"
                ),
            }
        }
        let control = control_socket::bind(&d.socket, d.socket_mode.0, policy.admin_gid)?;
        info!(socket = %d.socket.display(), policy = %policy.path.display(), sha256 = %policy.sha256, "supervisor starting");
        let mut daemon = Daemon {
            poll,
            signals,
            helpers: Role::ALL.map(Helper::new),
            policy,
            cmd: opts.helper,
            control,
            paths: PathTable::default(),
            audit,
            audit_backlog: VecDeque::new(),
            book,
            stats: Stats::default(),
            listener_outbox: VecDeque::new(),
            hello_deadline: [None; 3],
            stop_deadline: None,
            exit_code: exit::OK,
        };
        // Everything privileged is done: the socket is bound and chown'ed, the directories and
        // the audit log exist, the fd limit is raised.
        if nix::unistd::geteuid().is_root() {
            crate::privileges::drop_all().map_err(|e| format!("cannot drop privileges: {e}"))?;
            info!("all capabilities dropped, no_new_privs set");
        }
        for role in Role::ALL {
            daemon
                .start_helper(role)
                .map_err(|e| format!("cannot start the {role}: {e}"))?;
        }
        Ok(daemon)
    }

    fn helper(&mut self, role: Role) -> &mut Helper {
        &mut self.helpers[role as usize]
    }

    fn event_loop(&mut self) -> i32 {
        let mut events = Events::with_capacity(16);
        loop {
            if self.stop_deadline.is_some()
                && self
                    .helpers
                    .iter()
                    .all(|h| matches!(h.state, HelperState::Stopped | HelperState::Failed))
            {
                return self.exit_code;
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                error!("epoll_wait: {e}");
                return exit::FAILED;
            }
            for event in events.iter() {
                match event.token() {
                    SIGNAL_TOKEN => self.on_signals(),
                    token => {
                        if let Some(role) = role_of(token) {
                            if event.is_writable() && role == Role::Listener {
                                self.flush_listener();
                            }
                            if event.is_readable() || event.is_read_closed() {
                                self.on_helper_readable(role);
                            }
                        }
                    }
                }
            }
            self.on_timers(Instant::now());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let restarts = self.helpers.iter().filter_map(|h| match h.state {
            HelperState::Restarting { at } => Some(at),
            _ => None,
        });
        restarts
            .chain(self.hello_deadline.iter().flatten().copied())
            .chain(self.stop_deadline)
            .chain(self.book.next_deadline())
            .min()
    }

    // ------------------------------------------------------------------ signals and children

    fn on_signals(&mut self) {
        loop {
            match self.signals.read_signal() {
                Ok(Some(info)) => match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGTERM | Signal::SIGINT) => {
                        info!(signal = info.ssi_signo, "stop requested");
                        self.begin_stop();
                    }
                    Ok(Signal::SIGHUP) => {
                        let _ = self.reload_policy();
                    }
                    Ok(Signal::SIGCHLD) => self.reap_children(),
                    _ => {}
                },
                Ok(None) => return,
                Err(e) => {
                    error!("reading signalfd: {e}");
                    return;
                }
            }
        }
    }

    /// SIGCHLD coalesces, so reap every child that has exited.
    fn reap_children(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.on_child_exit(pid, format!("exited with status {code}"), code == 0)
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.on_child_exit(pid, format!("killed by {sig}"), false)
                }
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
                Ok(_) => continue,
                Err(e) => {
                    error!("waitpid: {e}");
                    return;
                }
            }
        }
    }

    fn on_child_exit(&mut self, pid: Pid, how: String, clean: bool) {
        let Some(role) = Role::ALL
            .into_iter()
            .find(|r| self.helpers[*r as usize].pid() == Some(pid))
        else {
            debug!(pid = pid.as_raw(), "reaped unknown child");
            return;
        };
        self.drop_channel(role);
        self.hello_deadline[role as usize] = None;
        if self.stop_deadline.is_some() {
            info!(%role, pid = pid.as_raw(), "helper {how}");
            self.helper(role).state = HelperState::Stopped;
            return;
        }
        if clean {
            warn!(%role, pid = pid.as_raw(), "helper {how} unasked");
        } else {
            error!(%role, pid = pid.as_raw(), "helper {how}");
        }
        self.helper_crashed(role);
    }

    fn helper_crashed(&mut self, role: Role) {
        let p = &self.policy.policy.supervisor;
        let (mode, max, window) = (p.on_helper_crash, p.max_restarts, p.restart_window);
        if mode == OnHelperCrash::Exit {
            self.helper(role).state = HelperState::Failed;
            self.fail_stop(format!("the {role} died and on_helper_crash = \"exit\""));
            return;
        }
        match self.helper(role).plan_restart(Instant::now(), max, window) {
            Some(at) => {
                let h = self.helper(role);
                info!(%role, restarts = h.total_restarts, in_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64, "restarting helper");
                h.state = HelperState::Restarting { at };
            }
            None => {
                self.helper(role).state = HelperState::Failed;
                self.fail_stop(format!(
                    "the {role} crashed more than {max} times within {}",
                    humantime::format_duration(window)
                ));
            }
        }
    }

    fn fail_stop(&mut self, why: String) {
        error!("fail-stop: {why}");
        self.audit(Event {
            event: "supervisor-stop".into(),
            reason: Some(why.clone()),
            evidence: serde_json::json!({}),
            ..Event::default()
        });
        self.exit_code = exit::FAILED;
        self.begin_stop();
    }

    // ------------------------------------------------------------------ helper lifecycle

    fn start_helper(&mut self, role: Role) -> Result<(), String> {
        let (mut ours, theirs) = Channel::pair().map_err(|e| e.to_string())?;
        ours.set_nonblocking(true).map_err(|e| e.to_string())?;
        let listen = (role == Role::Listener).then(|| self.control.fd.as_fd());
        let pid =
            spawn_helper(&self.cmd, role, theirs.as_fd(), listen).map_err(|e| e.to_string())?;
        drop(theirs);
        self.poll
            .registry()
            .register(&mut ours, token_of(role), Interest::READABLE)
            .map_err(|e| format!("register channel: {e}"))?;
        info!(%role, pid = pid.as_raw(), "helper started");
        self.helper(role).state = HelperState::Running {
            pid,
            channel: ours,
            hello: None,
        };
        self.hello_deadline[role as usize] = Some(Instant::now() + HELLO_TIMEOUT);
        Ok(())
    }

    /// Closes our end of a helper's channel; the helper's state becomes `Reaping` if it was running.
    fn drop_channel(&mut self, role: Role) {
        match role {
            Role::Purger => {
                if let Some(id) = self.book.on_purger_lost() {
                    warn!(id, "purger lost with a request in flight: requeued, to be re-verified from scratch");
                }
            }
            Role::Listener => self.listener_outbox.clear(),
            Role::Checker => {}
        }
        let registry = self.poll.registry();
        let h = &mut self.helpers[role as usize];
        if let HelperState::Running { pid, channel, .. } = &mut h.state {
            let _ = registry.deregister(channel);
            h.state = HelperState::Reaping { pid: *pid };
        }
    }

    /// The helper broke the protocol or stopped talking: it is not trusted again. SIGKILL, and
    /// the restart decision is made when SIGCHLD reports it dead.
    fn kill_helper(&mut self, role: Role, why: &str) {
        if let Some(pid) = self.helper(role).pid() {
            error!(%role, pid = pid.as_raw(), "{why}: killing helper");
            let _ = kill(pid, Signal::SIGKILL);
        }
        self.drop_channel(role);
        self.hello_deadline[role as usize] = None;
    }

    /// The helper sent something the protocol forbids: counted, then killed like any lost helper.
    fn protocol_violation(&mut self, role: Role, why: impl std::fmt::Display) {
        *self.stats.protocol_violations.entry(role).or_default() += 1;
        self.kill_helper(role, &format!("protocol violation: {why}"));
    }

    /// Sends to a role's helper; a helper that is not running is a closed channel.
    fn send<T: Message>(
        &self,
        role: Role,
        msg: &T,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), IpcError> {
        match &self.helpers[role as usize].state {
            HelperState::Running { channel, .. } => channel.send(msg, fd),
            _ => Err(IpcError::Closed),
        }
    }

    fn begin_stop(&mut self) {
        if self.stop_deadline.is_some() {
            return;
        }
        self.stop_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
        for role in Role::ALL {
            let sent = match &self.helpers[role as usize].state {
                HelperState::Running { .. } => match role {
                    Role::Checker => self.send(role, &ToChecker::Shutdown, None),
                    Role::Purger => self.send(role, &ToPurger::Shutdown, None),
                    Role::Listener => self.send(role, &ToListener::Shutdown, None),
                },
                HelperState::Restarting { .. } => {
                    self.helper(role).state = HelperState::Stopped;
                    continue;
                }
                _ => continue,
            };
            if let Err(e) = sent {
                self.kill_helper(role, &format!("cannot send shutdown ({e})"));
            }
        }
    }

    fn on_timers(&mut self, now: Instant) {
        if self.stop_deadline.is_some_and(|d| d <= now) {
            for role in Role::ALL {
                if let Some(pid) = self.helper(role).pid() {
                    warn!(%role, pid = pid.as_raw(), "helper did not stop in time: SIGKILL");
                    let _ = kill(pid, Signal::SIGKILL);
                    let _ = waitpid(pid, None);
                    self.drop_channel(role);
                }
                self.helper(role).state = HelperState::Stopped;
            }
            return;
        }
        self.book.tick(now);
        self.try_dispatch();
        for role in Role::ALL {
            if self.hello_deadline[role as usize].is_some_and(|d| d <= now) {
                self.kill_helper(role, "no Ready within the hello timeout");
            }
            if matches!(self.helper(role).state, HelperState::Restarting { at } if at <= now) {
                if let Err(e) = self.start_helper(role) {
                    error!(%role, "restart failed: {e}");
                    self.helper(role).state = HelperState::Stopped;
                    self.helper_crashed(role);
                }
            }
        }
    }

    // ------------------------------------------------------------------ messages

    fn on_helper_readable(&mut self, role: Role) {
        // Edge-triggered: drain until the socket would block.
        loop {
            let result = match role {
                Role::Checker => self
                    .recv::<CheckerMsg>(role)
                    .map(|r| r.map(|r| self.on_checker(r))),
                Role::Purger => self
                    .recv::<PurgerMsg>(role)
                    .map(|r| r.map(|r| self.on_purger(r))),
                Role::Listener => self
                    .recv::<ListenerMsg>(role)
                    .map(|r| r.map(|r| self.on_listener(r))),
            };
            match result {
                Ok(Some(Ok(()))) => continue,
                Ok(None) => return,
                Ok(Some(Err(violation))) => return self.protocol_violation(role, violation),
                Err(IpcError::WouldBlock) => return,
                // Closing the channel is how a helper answers Shutdown; otherwise it is a crash.
                Err(IpcError::Closed) if self.stop_deadline.is_some() => {
                    return self.drop_channel(role)
                }
                Err(IpcError::Closed) => {
                    return self.kill_helper(role, "helper closed its channel")
                }
                Err(e) => return self.protocol_violation(role, e),
            }
        }
    }

    /// `Ok(None)` when the helper has no open channel (it was killed earlier in this batch).
    fn recv<T: Message>(&mut self, role: Role) -> Result<Option<Received<T>>, IpcError> {
        match &mut self.helpers[role as usize].state {
            HelperState::Running { channel, .. } => channel.recv::<T>().map(Some),
            _ => Ok(None),
        }
    }

    /// Phase check shared by all roles: `Ready` comes first, exactly once, from the right pid.
    fn on_hello(&mut self, role: Role, hello: Hello) -> Result<(), String> {
        let HelperState::Running {
            pid, hello: slot, ..
        } = &mut self.helpers[role as usize].state
        else {
            return Ok(());
        };
        if slot.is_some() {
            return Err("second Ready".into());
        }
        if hello.pid != pid.as_raw() as u32 {
            return Err(format!(
                "Ready from pid {} but the helper is pid {}",
                hello.pid, pid
            ));
        }
        info!(%role, pid = hello.pid, sandbox = ?hello.sandbox, "helper ready");
        *slot = Some(hello);
        self.hello_deadline[role as usize] = None;
        self.helper(role).mark_healthy();
        self.configure(role)
            .map_err(|e| format!("cannot configure: {e}"))?;
        match role {
            Role::Purger => self.try_dispatch(),
            Role::Checker => self.paths.new_generation(),
            Role::Listener => {}
        }
        Ok(())
    }

    fn is_ready(&self, role: Role) -> bool {
        matches!(
            self.helpers[role as usize].state,
            HelperState::Running { hello: Some(_), .. }
        )
    }

    fn configure(&self, role: Role) -> Result<(), IpcError> {
        let p = &self.policy.policy;
        let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
        match role {
            Role::Checker => self.send(
                role,
                &ToChecker::Configure(CheckerConfig {
                    interval_ms: ms(p.checker.interval),
                    tur_timeout_ms: ms(p.checker.tur_timeout),
                    max_in_flight: p.checker.max_in_flight,
                }),
                None,
            ),
            Role::Purger => self.send(
                role,
                &ToPurger::Configure(PurgerConfig {
                    confirmations: p.purge.confirmations,
                    confirmation_interval_ms: ms(p.purge.confirmation_interval),
                    tur_timeout_ms: ms(p.checker.tur_timeout),
                    require_multipath: p.purge.require_multipath,
                    allow_last_path: p.purge.allow_last_path,
                    dry_run: p.purge.dry_run,
                }),
                None,
            ),
            Role::Listener => self.send(
                role,
                &ToListener::Configure(ListenerConfig {
                    request_timeout_ms: ms(p.daemon.request_timeout),
                    admin_gid: self.policy.admin_gid,
                    max_clients: p.daemon.max_clients,
                }),
                None,
            ),
        }
    }

    fn on_checker(&mut self, r: Received<CheckerMsg>) -> Result<(), String> {
        let kind = r.msg.kind();
        match r.msg {
            CheckerMsg::Ready(hello) => return self.on_hello(Role::Checker, hello),
            _ if !self.is_ready(Role::Checker) => return Err(format!("{kind} before Ready")),
            CheckerMsg::Path(report) => self.on_path_report(report, r.fd),
            CheckerMsg::Gone { name, dev_t } => {
                if self.paths.remove(dev_t).is_some() {
                    info!(dev = %name, %dev_t, "path removed");
                }
                if let Some(ev) = self
                    .book
                    .on_not_disconnected(dev_t, format!("{name} was removed"))
                {
                    self.audit(ev);
                }
            }
            CheckerMsg::ScanDone { paths } => {
                debug!(paths, known = self.paths.len(), "checker round done");
                for gone in self.paths.drop_stale() {
                    let id = &gone.report.identity;
                    info!(dev = %id.name, dev_t = %id.dev_t, "path not seen by the restarted checker: removed");
                    let why = format!("{} not found by the restarted checker", id.name);
                    if let Some(ev) = self.book.on_not_disconnected(id.dev_t, why) {
                        self.audit(ev);
                    }
                }
            }
        }
        Ok(())
    }

    fn on_path_report(&mut self, report: PathReport, fd: Option<OwnedFd>) {
        if self.paths.is_uninformative(&report) {
            self.paths.touch(report.identity.dev_t);
            return;
        }
        let (identity, state, evidence) = (
            report.identity.clone(),
            report.state.clone(),
            report.evidence.clone(),
        );
        let old = self.paths.update(report, fd);
        if old.as_ref() != Some(&state) {
            info!(dev = %identity.name, from = old.as_ref().map_or("new", |s| s.word()), to = state.word(), "path state");
        }
        let events = if state == PathState::Disconnected {
            self.book.on_disconnected(
                &identity,
                &evidence,
                Instant::now(),
                self.paths.len(),
                &self.policy,
            )
        } else {
            let why = format!("{} reported {} again", identity.name, state.word());
            self.book
                .on_not_disconnected(identity.dev_t, why)
                .into_iter()
                .collect()
        };
        for ev in events {
            if ev.event == "paused" {
                warn!(
                    reason = ev.reason.as_deref().unwrap_or(""),
                    "purging paused itself"
                );
            }
            self.audit(ev);
        }
        self.try_dispatch();
    }

    fn on_purger(&mut self, r: Received<PurgerMsg>) -> Result<(), String> {
        let kind = r.msg.kind();
        match r.msg {
            PurgerMsg::Ready(hello) => self.on_hello(Role::Purger, hello),
            _ if !self.is_ready(Role::Purger) => Err(format!("{kind} before Ready")),
            PurgerMsg::Intent { id, evidence } => {
                let (record, mut proceed) = self.book.on_intent(id, &evidence, Instant::now())?;
                if let Some(ev) = record {
                    // The intent must be durable before the purger may delete anything.
                    if let Err(e) = self.audit_now(ev) {
                        error!(id, "cannot record intent, aborting the deletion: {e}");
                        self.book
                            .intent_not_recorded(id, format!("audit log unwritable: {e}"));
                        proceed = false;
                    }
                }
                info!(id, proceed, "intent answered");
                if let Err(e) = self.send(Role::Purger, &ToPurger::Decision { id, proceed }, None) {
                    // The purger died after asking: not a violation; its request is requeued.
                    self.kill_helper(Role::Purger, &format!("cannot answer intent ({e})"));
                }
                Ok(())
            }
            PurgerMsg::Outcome {
                id,
                outcome,
                evidence,
            } => {
                let dry_run = self.policy.policy.purge.dry_run;
                let ev = self.book.on_outcome(id, &outcome, &evidence, dry_run)?;
                info!(
                    id,
                    event = %ev.event,
                    dev = ev.dev.as_deref().unwrap_or(""),
                    reason = ev.reason.as_deref().unwrap_or(""),
                    "purge finished"
                );
                if ev.event == "deleted" {
                    if let Some(dev_t) = ev.dev_t.as_deref().and_then(|d| d.parse().ok()) {
                        self.paths.remove(dev_t);
                    }
                }
                self.audit(ev);
                self.try_dispatch();
                Ok(())
            }
        }
    }

    /// Hands the purger its next request, if it is idle and the lifecycle has one.
    fn try_dispatch(&mut self) {
        if self.stop_deadline.is_some() || !self.is_ready(Role::Purger) {
            return;
        }
        let max = self.policy.policy.purge.max_per_minute;
        let Some(next) = self.book.dispatch(Instant::now(), max) else {
            return;
        };
        let sent = match next {
            Dispatch::Resolve { id, identity } => {
                info!(id, dev = %identity.name, "resolving an open intent");
                self.send(
                    Role::Purger,
                    &ToPurger::Resolve(PurgeRequest { id, identity }),
                    None,
                )
            }
            Dispatch::Purge { id, identity } => {
                let Some(pin) = self.paths.pin(identity.dev_t) else {
                    // Only a path whose checker fd we still hold may be purged: that fd is what
                    // keeps its dev_t from being reused by another device meanwhile.
                    if let Some(ev) = self
                        .book
                        .abort_dispatch(id, "the path's pinned fd is gone".into())
                    {
                        self.audit(ev);
                    }
                    return self.try_dispatch();
                };
                info!(id, dev = %identity.name, "sending purge request");
                self.send(
                    Role::Purger,
                    &ToPurger::Purge(PurgeRequest { id, identity }),
                    Some(pin),
                )
            }
        };
        if let Err(e) = sent {
            self.kill_helper(Role::Purger, &format!("cannot send request ({e})"));
        }
    }

    /// Appends an audit record now; the caller decides what a failure means.
    fn audit_now(&mut self, ev: Event) -> Result<(), String> {
        while let Some(old) = self.audit_backlog.pop_front() {
            if let Err(e) = self.audit.append(old.clone(), &self.policy.sha256) {
                self.audit_backlog.push_front(old);
                return Err(e);
            }
        }
        let word = ev.event.clone();
        self.audit.append(ev, &self.policy.sha256)?;
        *self.stats.audit_events.entry(word.to_string()).or_default() += 1;
        Ok(())
    }

    /// Appends an audit record; if the log fails, keeps it for later and pauses purging, since
    /// a deletion that cannot be recorded must not happen.
    fn audit(&mut self, ev: Event) {
        if let Err(e) = self.audit_now(ev.clone()) {
            error!("audit log write failed, purging paused: {e}");
            self.audit_backlog.push_back(ev);
            if let Some(pause) = self.book.pause("the supervisor: audit log unwritable") {
                self.audit_backlog.push_back(pause);
            }
        }
    }

    fn on_listener(&mut self, r: Received<ListenerMsg>) -> Result<(), String> {
        let kind = r.msg.kind();
        match r.msg {
            ListenerMsg::Ready(hello) => self.on_hello(Role::Listener, hello),
            _ if !self.is_ready(Role::Listener) => Err(format!("{kind} before Ready")),
            ListenerMsg::Request {
                client,
                peer,
                command,
            } => {
                info!(
                    client,
                    uid = peer.uid,
                    pid = peer.pid,
                    ?command,
                    "control request"
                );
                self.stats.control_requests += 1;
                let reply = self.on_command(command, peer);
                self.reply(client, reply);
                Ok(())
            }
            ListenerMsg::Abandoned { .. } => Ok(()),
        }
    }

    // ------------------------------------------------------------------ reconfigure

    /// SIGHUP or `reconfigure`: load and validate the policy file again; an invalid one changes
    /// nothing. Returns what happened, for the control reply.
    fn reload_policy(&mut self) -> Result<String, String> {
        let path = self.policy.path.clone();
        match mpsup_policy::load(&path) {
            Ok(new) if new.sha256 == self.policy.sha256 => {
                info!("reload: policy unchanged");
                Ok("policy unchanged\n".into())
            }
            Ok(new) => {
                info!(old = %self.policy.sha256, new = %new.sha256, "reload: new policy in force");
                for w in &new.warnings {
                    warn!("policy: {w}");
                }
                let (old_hash, new_hash) = (self.policy.sha256.clone(), new.sha256.clone());
                self.policy = new;
                let evidence =
                    serde_json::json!({ "old_sha256": old_hash, "new_sha256": new_hash });
                let reason = Some(format!("policy reloaded from {}", path.display()));
                self.audit(Event {
                    event: "policy-change".into(),
                    reason,
                    evidence,
                    ..Event::default()
                });
                for ev in self.book.rejudge(&self.policy) {
                    self.audit(ev);
                }
                for role in Role::ALL {
                    if self.is_ready(role) {
                        if let Err(e) = self.configure(role) {
                            self.kill_helper(role, &format!("cannot reconfigure ({e})"));
                        }
                    }
                }
                self.try_dispatch();
                Ok(format!("new policy in force (sha256 {new_hash})\n"))
            }
            Err(e) => {
                error!("reload refused, old policy stays in force: {e}");
                Err(format!("reload refused, old policy stays in force: {e}"))
            }
        }
    }
}

/// The identity an intent record names, to resolve it after a restart.
fn identity_of_record(r: &crate::audit::Record) -> Option<(u64, PathIdentity)> {
    Some((
        r.body.id?,
        PathIdentity {
            name: r.body.dev.clone()?,
            dev_t: r.body.dev_t.as_deref()?.parse().ok()?,
            hctl: r.body.hctl.as_deref()?.parse().ok()?,
            vendor: String::new(),
            model: String::new(),
            wwid: r.body.wwid.clone(),
            map: None,
        },
    ))
}

/// The checker keeps one fd per path and the supervisor one per disconnected path; a default
/// RLIMIT_NOFILE (1024 soft, 4096 hard) blinds the checker on a host with a few thousand paths
/// (seen in the lab benchmark: it could not even list /sys/class/block). Raise both limits to
/// what the checker's sandbox profile allows, before forking: the helpers inherit the hard
/// limit and only a privileged process may raise it. Failing is a warning, not an error.
fn raise_fd_limit() {
    use mpsup_policy::sandbox::{CHECKER_MAX_PATHS, FD_SLACK};
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = CHECKER_MAX_PATHS + FD_SLACK;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= want {
        return;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)) {
        Ok(()) => info!(from = soft, to = want, "raised RLIMIT_NOFILE"),
        Err(e) => {
            let usable = hard.max(soft);
            let _ = setrlimit(Resource::RLIMIT_NOFILE, usable, hard);
            warn!(
                soft = usable,
                hard,
                want,
                "cannot raise RLIMIT_NOFILE ({e}): the checker can watch fewer than {usable} paths"
            );
        }
    }
}
