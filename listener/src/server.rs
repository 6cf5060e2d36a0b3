//! The listener's single event loop: the supervisor channel, the listening socket and every
//! client, multiplexed by one `mio::Poll`, with client deadlines kept in an ordered set whose
//! first entry is the poll timeout. See the crate docs for the state machine and the argument
//! that nothing here blocks, sleeps or spins.

use crate::framing::{
    error_frame, Decoded, FrameError, Outgoing, ReplyAssembler, RequestDecoder, HEADER, MAX_REQUEST,
};
use crate::{grammar, peer, ListenerError};
use mio::event::Event;
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use mpsup_ipc::{
    Channel, ControlCommand, IpcError, ListenerConfig, ListenerMsg, PeerCred, ToListener,
};
use nix::errno::Errno;
use nix::sys::socket::{recv, send, MsgFlags};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Tokens for the two fixed sources; clients use their id, which starts at 1 and never comes
/// near these (a u64 counter would take centuries to get there).
const CHANNEL: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// After `accept` fails for lack of fds or memory, the listening socket rests this long (or until
/// a client closes) instead of being retried on every wakeup.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Longest request timeout honoured (a day); the policy's own limit is far lower.
const MAX_REQUEST_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// Whether the loop goes on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// Where a client is in `Receive -> Parse -> AwaitSupervisor -> Send -> Closed`. Parse is a pure
/// function run the moment a frame completes, so it never waits and needs no variant; Closed is
/// the client's removal from the table (its fd, buffers and slot go with it).
#[derive(Debug)]
enum Phase {
    Receive(RequestDecoder),
    AwaitSupervisor(ReplyAssembler),
    Send { out: Outgoing, then_close: bool },
}

struct Client {
    stream: UnixStream,
    peer: PeerCred,
    /// Decided at accept time from the credentials the kernel recorded at connect time.
    admin: bool,
    /// The admin group that decision used, for the "permission denied" message.
    admin_gid: u32,
    deadline: Instant,
    phase: Phase,
}

/// What driving a client asks the server to do.
enum Step {
    /// Nothing until the next readiness event, reply or deadline.
    Wait,
    /// A parsed, authorized request for the supervisor; the client now awaits its reply.
    Forward(ControlCommand),
    /// A reply went out completely and the connection stays open for another request.
    Replied,
    /// End of the connection (EOF, error, or a reply that must close it).
    Close,
}

impl Client {
    /// Moves the client as far as its socket allows without waiting. `peer_gone` says the last
    /// event reported the peer's end fully closed (a half-close, `shutdown(SHUT_WR)`, is not:
    /// such a client still reads its reply).
    fn drive(&mut self, peer_gone: bool) -> Step {
        loop {
            match &mut self.phase {
                Phase::Receive(decoder) => match read_frame(&self.stream, decoder) {
                    Received::Wait => return Step::Wait,
                    Received::Eof | Received::Failed => return Step::Close,
                    Received::Bad(e) => {
                        debug!(peer = ?self.peer, why = %e.why, "bad request frame");
                        self.phase = Phase::Send {
                            out: Outgoing::new(error_frame(&e.why)),
                            then_close: e.fatal,
                        };
                    }
                    Received::Request(text) => match self.parse(&text) {
                        Ok(_) if peer_gone => return Step::Close,
                        Ok(command) => {
                            self.phase = Phase::AwaitSupervisor(ReplyAssembler::new());
                            return Step::Forward(command);
                        }
                        Err(why) => {
                            self.phase = Phase::Send {
                                out: Outgoing::new(error_frame(&why)),
                                then_close: false,
                            };
                        }
                    },
                },
                Phase::AwaitSupervisor(_) => {
                    return if peer_gone { Step::Close } else { Step::Wait };
                }
                Phase::Send { out, then_close } => match write_out(&self.stream, out) {
                    Sent::Wait => return Step::Wait,
                    Sent::Failed => return Step::Close,
                    Sent::Done if *then_close => return Step::Close,
                    Sent::Done => {
                        self.phase = Phase::Receive(RequestDecoder::new());
                        return Step::Replied;
                    }
                },
            }
        }
    }

    /// Parse: grammar, then authorization.
    fn parse(&self, text: &str) -> Result<ControlCommand, String> {
        let command = grammar::parse(text)?;
        if grammar::needs_admin(&command) && !self.admin {
            return Err(format!(
                "permission denied: {} needs uid 0 or group {}",
                grammar::name(&command),
                self.admin_gid
            ));
        }
        Ok(command)
    }

    /// Best effort `error: <why>` to a client we are about to close: one non-blocking send,
    /// whatever part of it fits. Only for clients that have not started receiving a reply.
    fn farewell(&self, why: &str) {
        if matches!(self.phase, Phase::Send { .. }) {
            return;
        }
        let frame = error_frame(why);
        let _ = send(self.stream.as_raw_fd(), &frame, send_flags());
    }
}

enum Received {
    Wait,
    Eof,
    Failed,
    Request(String),
    Bad(FrameError),
}

/// Reads until one frame completes or the socket has nothing more. Reads never ask for more than
/// the current frame's missing bytes, so a following request stays in the socket.
fn read_frame(stream: &UnixStream, decoder: &mut RequestDecoder) -> Received {
    let mut buf = [0u8; HEADER + MAX_REQUEST];
    loop {
        let want = decoder.missing();
        match recv(stream.as_raw_fd(), &mut buf[..want], MsgFlags::MSG_DONTWAIT) {
            Ok(0) => {
                if !decoder.is_idle() {
                    debug!("client closed in the middle of a request");
                }
                return Received::Eof;
            }
            Ok(n) => match decoder.feed(&buf[..n]).1 {
                Decoded::Incomplete => continue,
                Decoded::Request(text) => return Received::Request(text),
                Decoded::Error(e) => return Received::Bad(e),
            },
            Err(Errno::EAGAIN) => return Received::Wait,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                debug!(error = %e, "client read failed");
                return Received::Failed;
            }
        }
    }
}

enum Sent {
    Wait,
    Done,
    Failed,
}

fn write_out(stream: &UnixStream, out: &mut Outgoing) -> Sent {
    while !out.is_done() {
        match send(stream.as_raw_fd(), out.pending(), send_flags()) {
            Ok(n) => out.advance(n),
            Err(Errno::EAGAIN) => return Sent::Wait,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                debug!(error = %e, "client write failed");
                return Sent::Failed;
            }
        }
    }
    Sent::Done
}

/// Never wait, and never die of SIGPIPE when a client has gone.
fn send_flags() -> MsgFlags {
    MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL
}

pub(crate) struct Server {
    poll: Poll,
    channel: Channel,
    listener: UnixListener,
    /// `None` until the supervisor's first `Configure`; nothing is accepted before it.
    config: Option<ListenerConfig>,
    /// Whether the listening socket is registered with the poll.
    accepting: bool,
    /// Set after `accept` ran out of fds or memory.
    accept_retry_at: Option<Instant>,
    clients: HashMap<u64, Client>,
    /// Every live client's deadline, earliest first: the first entry is the poll timeout.
    deadlines: BTreeSet<(Instant, u64)>,
    next_id: u64,
    /// Messages for the supervisor that the channel could not take yet. Bounded: each client
    /// has at most one `Request` or one `Abandoned` in it.
    outbox: VecDeque<ListenerMsg>,
}

impl Server {
    pub(crate) fn new(mut channel: Channel, listen: OwnedFd) -> Result<Server, ListenerError> {
        let poll = Poll::new().map_err(ListenerError::Poll)?;
        channel.set_nonblocking(true)?;
        // O_NONBLOCK lands on the open file description the supervisor shares; it only binds
        // the socket and never accepts on it, so that is harmless.
        set_nonblocking(&listen).map_err(ListenerError::Socket)?;
        let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(listen));
        poll.registry()
            .register(
                &mut channel,
                CHANNEL,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(ListenerError::Poll)?;
        Ok(Server {
            poll,
            channel,
            listener,
            config: None,
            accepting: false,
            accept_retry_at: None,
            clients: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_id: 1,
            outbox: VecDeque::new(),
        })
    }

    /// Queues a message for the supervisor and sends what the channel takes.
    pub(crate) fn send(&mut self, msg: ListenerMsg) -> Result<Flow, ListenerError> {
        self.outbox.push_back(msg);
        self.flush()
    }

    pub(crate) fn run(mut self) -> Result<(), ListenerError> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.next_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(ListenerError::Poll(e));
            }
            for event in events.iter() {
                match event.token() {
                    CHANNEL => {
                        if self.on_channel()? == Flow::Stop {
                            self.close_all("listener shutting down");
                            return Ok(());
                        }
                    }
                    LISTENER => self.accept_pending()?,
                    Token(id) => self.on_client_event(id as u64, event),
                }
            }
            self.expire(Instant::now());
            if self.flush()? == Flow::Stop {
                self.close_all("listener shutting down");
                return Ok(());
            }
            self.update_accepting()?;
        }
    }

    /// Time until the earliest deadline (or accept retry); `None` (sleep until an event) when
    /// there is none, which is the idle case.
    fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let first = self.deadlines.first().map(|&(at, _)| at);
        let at = match (first, self.accept_retry_at) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(at.saturating_duration_since(now))
    }

    // ------------------------------------------------------------------ supervisor channel

    /// Drains the channel (the registration is edge-triggered, so everything queued must be read
    /// now). Closed means the supervisor is gone: a clean stop, not an error.
    fn on_channel(&mut self) -> Result<Flow, ListenerError> {
        loop {
            let msg = match self.channel.recv::<ToListener>() {
                Ok(received) => received.msg,
                Err(IpcError::WouldBlock) => return Ok(Flow::Continue),
                Err(IpcError::Io(Errno::EINTR)) => continue,
                Err(IpcError::Closed) => {
                    info!("supervisor closed the channel");
                    return Ok(Flow::Stop);
                }
                Err(e) => return Err(e.into()),
            };
            match msg {
                ToListener::Configure(config) => self.configure(config),
                ToListener::Reply { .. } if self.config.is_none() => {
                    return Err(ListenerError::Protocol(
                        "ToListener::Reply before ToListener::Configure".into(),
                    ))
                }
                ToListener::Reply {
                    client,
                    chunk,
                    last,
                } => self.on_reply(client, &chunk, last),
                ToListener::Shutdown => {
                    info!("shutting down");
                    return Ok(Flow::Stop);
                }
            }
        }
    }

    /// A later `Configure` (after the supervisor reloads its policy) applies to connections
    /// accepted from then on; existing clients keep their deadline and admin decision.
    fn configure(&mut self, mut config: ListenerConfig) {
        if config.max_clients == 0 {
            warn!("max_clients 0 would serve nobody; using 1");
            config.max_clients = 1;
        }
        // Deadlines are `Instant + timeout`, which must not overflow whatever the supervisor says.
        let timeout = config.request_timeout_ms.clamp(1, MAX_REQUEST_TIMEOUT_MS);
        if timeout != config.request_timeout_ms {
            warn!(
                asked = config.request_timeout_ms,
                used = timeout,
                "request timeout clamped"
            );
            config.request_timeout_ms = timeout;
        }
        info!(?config, "configured");
        self.config = Some(config);
    }

    fn on_reply(&mut self, id: u64, chunk: &str, last: bool) {
        let Some(client) = self.clients.get_mut(&id) else {
            debug!(client = id, "reply for a client that is gone; dropped");
            return;
        };
        let Phase::AwaitSupervisor(assembler) = &mut client.phase else {
            debug!(client = id, "reply for a client not awaiting one; dropped");
            return;
        };
        assembler.push(chunk);
        if !last {
            return;
        }
        let assembler = std::mem::take(assembler);
        client.phase = Phase::Send {
            out: Outgoing::new(assembler.finish()),
            then_close: false,
        };
        // The socket may well be writable already; with edge-triggered readiness no event
        // would tell us so, so try now.
        self.drive_client(id, false);
    }

    /// Sends queued messages until the channel is full (then its writable edge resumes us).
    fn flush(&mut self) -> Result<Flow, ListenerError> {
        while let Some(msg) = self.outbox.front() {
            match self.channel.send(msg, None) {
                Ok(()) => {
                    self.outbox.pop_front();
                }
                Err(IpcError::WouldBlock) => break,
                Err(IpcError::Io(Errno::EINTR)) => continue,
                Err(IpcError::Closed) => {
                    info!("supervisor closed the channel");
                    return Ok(Flow::Stop);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Flow::Continue)
    }

    // ------------------------------------------------------------------ accepting

    /// Accepts while there is room. Full (or out of fds) means deregistering the listening
    /// socket: connections wait in the kernel's backlog, and registering again later reports
    /// them at once (epoll checks readiness on registration), so none is missed.
    fn accept_pending(&mut self) -> Result<(), ListenerError> {
        loop {
            let Some(config) = &self.config else {
                return Ok(());
            };
            if !self.accepting {
                return Ok(());
            }
            if self.clients.len() >= config.max_clients as usize {
                debug!(
                    clients = self.clients.len(),
                    "full; leaving connections in the backlog"
                );
                return self.set_accepting(false);
            }
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream)?,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => match e.raw_os_error().map(Errno::from_raw) {
                    // The connection died in the queue, or a protocol hiccup: try the next one.
                    Some(Errno::ECONNABORTED | Errno::EPROTO | Errno::EPERM) => continue,
                    // Out of fds or memory: rest rather than spin on a socket that stays ready.
                    _ => {
                        warn!(error = %e, "accept failed; pausing accepts");
                        self.accept_retry_at = Some(Instant::now() + ACCEPT_BACKOFF);
                        return self.set_accepting(false);
                    }
                },
            }
        }
    }

    fn admit(&mut self, mut stream: UnixStream) -> Result<(), ListenerError> {
        let Some(config) = &self.config else {
            return Ok(());
        };
        let peer = match peer::credentials(stream.as_fd()) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "SO_PEERCRED failed; dropping the connection");
                return Ok(());
            }
        };
        let admin = peer::is_admin(stream.as_fd(), &peer, config.admin_gid);
        let id = self.next_id;
        self.next_id += 1;
        let deadline = Instant::now() + Duration::from_millis(config.request_timeout_ms);
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(id as usize),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(error = %e, "cannot register a client; dropping it");
            return Ok(());
        }
        debug!(client = id, ?peer, admin, "accepted");
        self.deadlines.insert((deadline, id));
        self.clients.insert(
            id,
            Client {
                stream,
                peer,
                admin,
                admin_gid: config.admin_gid,
                deadline,
                phase: Phase::Receive(RequestDecoder::new()),
            },
        );
        Ok(())
    }

    fn set_accepting(&mut self, on: bool) -> Result<(), ListenerError> {
        if on == self.accepting {
            return Ok(());
        }
        let registry = self.poll.registry();
        if on {
            registry.register(&mut self.listener, LISTENER, Interest::READABLE)
        } else {
            registry.deregister(&mut self.listener)
        }
        .map_err(ListenerError::Poll)?;
        self.accepting = on;
        Ok(())
    }

    /// Accept only when configured, with a free slot, and not resting after an accept failure.
    fn update_accepting(&mut self) -> Result<(), ListenerError> {
        if self.accept_retry_at.is_some_and(|at| at > Instant::now()) {
            return Ok(());
        }
        self.accept_retry_at = None;
        let room = self
            .config
            .as_ref()
            .is_some_and(|c| self.clients.len() < c.max_clients as usize);
        self.set_accepting(room)
    }

    // ------------------------------------------------------------------ clients

    fn on_client_event(&mut self, id: u64, event: &Event) {
        // Events for a client closed earlier in this batch find nothing: ids are never reused.
        if self.clients.contains_key(&id) {
            self.drive_client(id, event.is_error() || event.is_write_closed());
        }
    }

    fn drive_client(&mut self, id: u64, peer_gone: bool) {
        loop {
            let Some(client) = self.clients.get_mut(&id) else {
                return;
            };
            match client.drive(peer_gone) {
                Step::Wait => return,
                Step::Forward(command) => {
                    debug!(client = id, ?command, "forwarding");
                    let peer = client.peer;
                    self.outbox.push_back(ListenerMsg::Request {
                        client: id,
                        peer,
                        command,
                    });
                    return;
                }
                Step::Replied => {
                    // Keep-alive: a fresh deadline for the next request, then read on at once
                    // (it may already be waiting, and no new edge would announce it).
                    let timeout = self.config.as_ref().map_or(0, |c| c.request_timeout_ms);
                    let deadline = Instant::now() + Duration::from_millis(timeout);
                    self.deadlines.remove(&(client.deadline, id));
                    client.deadline = deadline;
                    self.deadlines.insert((deadline, id));
                }
                Step::Close => {
                    self.close(id);
                    return;
                }
            }
        }
    }

    /// Closed: frees the slot, the buffers and the fd, and tells the supervisor if it was
    /// working for this client (or withdraws the request if it never left the outbox).
    fn close(&mut self, id: u64) {
        let Some(mut client) = self.clients.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(client.deadline, id));
        let _ = self.poll.registry().deregister(&mut client.stream);
        if let Phase::AwaitSupervisor(_) = client.phase {
            let queued = self
                .outbox
                .iter()
                .position(|m| matches!(m, ListenerMsg::Request { client, .. } if *client == id));
            match queued {
                Some(at) => {
                    self.outbox.remove(at);
                }
                None => self.outbox.push_back(ListenerMsg::Abandoned { client: id }),
            }
        }
        debug!(client = id, "closed");
        // A slot is free: an accept paused for lack of fds may work now.
        self.accept_retry_at = None;
    }

    /// Closes every client whose deadline has passed, after a best-effort `error: timeout`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            if let Some(client) = self.clients.get(&id) {
                debug!(client = id, phase = ?client.phase, "deadline");
                client.farewell("timeout");
                self.close(id);
            } else {
                self.deadlines.pop_first();
            }
        }
    }

    fn close_all(&mut self, why: &str) {
        for client in self.clients.values() {
            client.farewell(why);
        }
        self.clients.clear();
        self.deadlines.clear();
    }
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}
