//! The helpers' sandbox profiles, as reviewable data ([`profile`]), and the one function every
//! helper calls to put itself in its sandbox ([`apply`]), after its own setup and before its loop.
//!
//! # What a profile holds
//! - `nofile`: the RLIMIT_NOFILE (soft = hard) the helper runs with. RLIMIT_CORE is 0 for all.
//! - `fs`: landlock rules. Every filesystem right landlock knows (up to [`LANDLOCK_TARGET`]) is
//!   handled, plus TCP bind/connect (ABI 4) and the abstract-unix-socket and signal scopes
//!   (ABI 6); only the rules listed here are granted, so anything else is `EACCES`.
//! - `allow`: the seccomp allow-list (argument-filtered where it matters). Any other syscall
//!   kills the whole process (`SECCOMP_RET_KILL_PROCESS`, seen as SIGSYS by the supervisor).
//! - `errno`: syscalls answered with an error instead of a kill (a separate, permissive filter
//!   installed first; the kernel applies the most restrictive verdict of all filters).
//!
//! # Apply order (see [`apply`])
//! Compile the BPF programs first (nothing is applied if the profile is wrong), then rlimits,
//! landlock, capabilities, no_new_privs, seccomp last: each step may need syscalls the next one
//! forbids. The landlock crate also sets no_new_privs (landlock needs it without
//! CAP_SYS_ADMIN); step 4 sets and verifies it regardless.
//!
//! # Mandatory and optional parts
//! rlimits, capabilities, no_new_privs and seccomp are mandatory: failing any is an error and the
//! helper exits non-zero. Landlock is best effort (a kernel without it, or with an older ABI,
//! gets what it supports and the status says so) unless `require_landlock`, which makes it a
//! hard requirement of the whole [`LANDLOCK_TARGET`] ABI (Linux 6.12+): fail closed otherwise.
//! The only capability step that may be skipped is clearing the bounding set when the process
//! never had CAP_SETPCAP (an unprivileged run, e.g. tests): such a process cannot gain any
//! capability anyway (no_new_privs, no execve), and the status then says `capabilities_dropped:
//! false`.

use caps::{CapSet, Capability};
use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::fmt;

/// The helper a profile is for: the same role names the IPC layer uses.
pub use mpsup_ipc::Role;

/// The landlock ABI whose rights the profiles handle: 6 (Linux 6.12) adds the scopes; 5 the
/// device ioctl right; 4 TCP; 3 truncate; 2 refer. Later ABIs add nothing these profiles use.
pub const LANDLOCK_TARGET: ABI = ABI::V6;

/// Paths the checker may keep open at once (one fd per SCSI path). A host with more paths than
/// this gets `EMFILE` on the rest, which the checker reports as unreadable paths.
pub const CHECKER_MAX_PATHS: u64 = 65536;
/// Room for the helper's own fds: the channel, epoll, eventfd, uevent socket, stdio, sysfs
/// files and directories open during a scan, the purger's holder checks.
pub const FD_SLACK: u64 = 64;
/// The largest `daemon.max_clients` the policy accepts (validate.rs); the listener's fd limit is
/// sized from it because the sandbox is applied before `Configure` says the real value.
pub const LISTENER_MAX_CLIENTS: u64 = 4096;
/// The purger holds the passed fd, its own fd and one sibling path at a time.
pub const PURGER_NOFILE: u64 = 256;
/// `SG_IO`, the only ioctl the checker and purger make.
pub const SG_IO: u64 = 0x2285;

/// A filesystem right granted beneath a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsAccess {
    /// read files, list directories
    Read,
    /// `ioctl` on device nodes opened beneath the path (ABI 5; older kernels do not restrict it)
    DeviceIoctl,
    /// open existing files for writing (no create, no truncate, no remove)
    WriteFile,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsRule {
    pub path: &'static str,
    pub access: &'static [FsAccess],
}

/// A condition on one syscall argument; all conditions of an [`Allow`] must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// the low 32 bits of argument `index` equal `value`
    Eq32 { index: u8, value: u64 },
    /// argument `index` has every bit of `mask` set
    AllSet { index: u8, mask: u64 },
    /// argument `index` has no bit of `mask` set
    NoneSet { index: u8, mask: u64 },
}

/// One allowed syscall, optionally only with some argument values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allow {
    pub name: &'static str,
    pub nr: i64,
    pub only: &'static [Arg],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub helper: Role,
    /// RLIMIT_NOFILE, soft and hard.
    pub nofile: u64,
    pub fs: &'static [FsRule],
    pub allow: Vec<Allow>,
    /// Syscalls that fail with this errno instead of killing.
    pub errno: Vec<(Allow, i32)>,
}

macro_rules! sys {
    ($nr:ident) => {
        Allow {
            name: stringify!($nr),
            nr: libc::$nr as i64,
            only: &[],
        }
    };
    ($nr:ident, $only:expr) => {
        Allow {
            name: stringify!($nr),
            nr: libc::$nr as i64,
            only: $only,
        }
    };
}

const NO_EXEC_MAPPING: &[Arg] = &[Arg::NoneSet {
    index: 2,
    mask: libc::PROT_EXEC as u64,
}];

/// Every helper: its channel (sendmsg/recvmsg with fds), its event loop, logging to stderr,
/// memory, clocks, signals for abort, exit.
fn common() -> Vec<Allow> {
    let mut v = vec![
        sys!(SYS_read),
        sys!(SYS_write),
        sys!(SYS_writev),
        sys!(SYS_close),
        sys!(SYS_sendmsg),
        sys!(SYS_recvmsg),
        sys!(SYS_epoll_pwait),
        sys!(SYS_epoll_pwait2),
        sys!(SYS_epoll_ctl),
        sys!(SYS_ppoll),
        sys!(SYS_fcntl),
        sys!(SYS_clock_gettime),
        sys!(SYS_clock_getres),
        sys!(SYS_gettimeofday),
        sys!(SYS_clock_nanosleep),
        sys!(SYS_nanosleep),
        sys!(SYS_futex),
        sys!(SYS_brk),
        sys!(SYS_mmap, NO_EXEC_MAPPING),
        sys!(SYS_mprotect, NO_EXEC_MAPPING),
        sys!(SYS_munmap),
        sys!(SYS_mremap),
        sys!(SYS_madvise),
        sys!(SYS_rt_sigreturn),
        sys!(SYS_rt_sigprocmask),
        sys!(SYS_rt_sigaction),
        sys!(SYS_sigaltstack),
        sys!(SYS_getpid),
        sys!(SYS_gettid),
        // abort() signals itself; landlock's signal scope (ABI 6) keeps it from anyone else.
        sys!(SYS_tgkill),
        sys!(SYS_getrandom),
        sys!(SYS_sched_yield),
        sys!(SYS_restart_syscall),
        sys!(SYS_exit),
        sys!(SYS_exit_group),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([sys!(SYS_poll), sys!(SYS_epoll_wait)]);
    v
}

/// Reading sysfs and opening device nodes, SG_IO on them.
fn read_side() -> Vec<Allow> {
    let mut v = vec![
        sys!(SYS_openat),
        sys!(SYS_newfstatat),
        sys!(SYS_fstat),
        sys!(SYS_statx),
        sys!(SYS_getdents64),
        sys!(SYS_readlinkat),
        sys!(SYS_lseek),
        sys!(
            SYS_ioctl,
            &[Arg::Eq32 {
                index: 1,
                value: SG_IO
            }]
        ),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([sys!(SYS_readlink)]);
    v
}

const CHECKER_FS: &[FsRule] = &[
    FsRule {
        path: "/sys",
        access: &[FsAccess::Read],
    },
    FsRule {
        path: "/dev",
        access: &[FsAccess::Read, FsAccess::DeviceIoctl],
    },
];

const PURGER_FS: &[FsRule] = &[
    FsRule {
        path: "/sys",
        access: &[FsAccess::Read],
    },
    FsRule {
        path: "/dev",
        access: &[FsAccess::Read, FsAccess::DeviceIoctl],
    },
    // Landlock cannot name `delete` attributes of devices that do not exist yet; the narrower
    // guarantee is the purger's own: it opens only `<H:C:T:L>/delete`, O_WRONLY|O_NOFOLLOW,
    // never O_CREAT (sysfs cannot create files anyway), and seccomp leaves it no other way out.
    FsRule {
        path: "/sys/devices",
        access: &[FsAccess::WriteFile],
    },
];

/// The profile of one helper.
pub fn profile(helper: Role) -> Profile {
    let mut allow = common();
    let mut errno = Vec::new();
    let (nofile, fs) = match helper {
        Role::Checker => {
            allow.extend(read_side());
            allow.extend([
                // uevents: the netlink socket is opened before the sandbox; only reading it.
                sys!(SYS_recvfrom),
                // the worker pool starts threads after Configure, i.e. inside the sandbox
                sys!(
                    SYS_clone,
                    &[Arg::AllSet {
                        index: 0,
                        mask: libc::CLONE_THREAD as u64
                    }]
                ),
                sys!(SYS_set_robust_list),
                sys!(SYS_rseq),
                sys!(SYS_sched_getaffinity),
                // reading (never setting: new_limit is NULL) its RLIMIT_NOFILE, to size its
                // budget of path fds
                sys!(
                    SYS_prlimit64,
                    &[Arg::NoneSet {
                        index: 2,
                        mask: u64::MAX
                    }]
                ),
                sys!(
                    SYS_prctl,
                    &[Arg::Eq32 {
                        index: 0,
                        value: libc::PR_SET_NAME as u64
                    }]
                ),
            ]);
            // clone3's flags are behind a pointer seccomp cannot read: ENOSYS makes glibc fall
            // back to clone, whose flags are filtered above.
            errno.push((sys!(SYS_clone3), libc::ENOSYS));
            (CHECKER_MAX_PATHS + FD_SLACK, CHECKER_FS)
        }
        Role::Purger => {
            allow.extend(read_side());
            (PURGER_NOFILE, PURGER_FS)
        }
        Role::Listener => {
            allow.extend([
                sys!(SYS_accept4),
                sys!(SYS_getsockopt),
                sys!(SYS_recvfrom),
                sys!(SYS_sendto),
                sys!(SYS_shutdown),
            ]);
            // The `/proc/<pid>/status` fallback for supplementary groups fails cleanly.
            errno.push((sys!(SYS_openat), libc::EACCES));
            (LISTENER_MAX_CLIENTS + FD_SLACK, &[][..])
        }
    };
    Profile {
        helper,
        nofile,
        fs,
        allow,
        errno,
    }
}

/// What was applied; becomes the helper's `SandboxStatus`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub no_new_privs: bool,
    pub seccomp: bool,
    /// The kernel's landlock ABI, `None` without landlock.
    pub landlock_abi: Option<u8>,
    /// Every right of [`LANDLOCK_TARGET`] is enforced.
    pub landlock_fully_enforced: bool,
    pub capabilities_dropped: bool,
    /// Things the caller should log as warnings.
    pub warnings: Vec<String>,
}

/// Why a sandbox could not be applied. The helper must not go on.
#[derive(Debug)]
pub struct SandboxError {
    pub step: &'static str,
    pub message: String,
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sandbox: {}: {}", self.step, self.message)
    }
}

impl std::error::Error for SandboxError {}

fn err(step: &'static str, e: impl fmt::Display) -> SandboxError {
    SandboxError {
        step,
        message: e.to_string(),
    }
}

/// Puts the calling process in `helper`'s sandbox. Must be called while the process has one
/// thread (landlock, capabilities and no_new_privs are per thread; threads started later
/// inherit all of them and the seccomp filters).
pub fn apply(helper: Role, require_landlock: bool) -> Result<Applied, SandboxError> {
    let p = profile(helper);
    let programs = compile(&p)?;
    single_threaded()?;
    let mut applied = Applied::default();
    set_rlimits(&p)?;
    apply_landlock(&p, require_landlock, &mut applied)?;
    drop_capabilities(&mut applied)?;
    set_no_new_privs()?;
    applied.no_new_privs = true;
    for prog in &programs {
        seccompiler::apply_filter(prog).map_err(|e| err("seccomp", e))?;
    }
    applied.seccomp = true;
    Ok(applied)
}

fn single_threaded() -> Result<(), SandboxError> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map_err(|e| err("thread count", format!("/proc/self/task: {e}")))?
        .count();
    if threads != 1 {
        return Err(err(
            "thread count",
            format!("{threads} threads; the sandbox must be applied before any thread starts"),
        ));
    }
    Ok(())
}

/// The BPF programs in installation order: the errno filters (permissive), then the allow-list.
pub fn compile(p: &Profile) -> Result<Vec<BpfProgram>, SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| err("seccomp", e))?;
    let mut programs = Vec::new();
    let mut by_errno: BTreeMap<i32, Vec<Allow>> = BTreeMap::new();
    for (a, e) in &p.errno {
        by_errno.entry(*e).or_default().push(*a);
    }
    for (e, list) in by_errno {
        let filter = SeccompFilter::new(
            rules(&list)?,
            SeccompAction::Allow,
            SeccompAction::Errno(e as u32),
            arch,
        )
        .map_err(|e| err("seccomp", e))?;
        programs.push(BpfProgram::try_from(filter).map_err(|e| err("seccomp", e))?);
    }
    // The errno syscalls pass the allow-list so that the errno filter's verdict is the one that
    // counts (the kernel takes the most restrictive: a kill here would win over the errno).
    let mut allow = p.allow.clone();
    allow.extend(p.errno.iter().map(|(a, _)| *a));
    let filter = SeccompFilter::new(
        rules(&allow)?,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| err("seccomp", e))?;
    programs.push(BpfProgram::try_from(filter).map_err(|e| err("seccomp", e))?);
    Ok(programs)
}

fn rules(list: &[Allow]) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SandboxError> {
    let mut map: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for a in list {
        let slot = map.entry(a.nr).or_insert_with(|| Some(Vec::new()));
        if a.only.is_empty() {
            // unconditional wins over any filtered entry
            *slot = None;
            continue;
        }
        let Some(v) = slot else { continue };
        let conds = a
            .only
            .iter()
            .map(|c| {
                let (index, len, op, value) = match *c {
                    Arg::Eq32 { index, value } => {
                        (index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
                    }
                    Arg::AllSet { index, mask } => (
                        index,
                        SeccompCmpArgLen::Qword,
                        SeccompCmpOp::MaskedEq(mask),
                        mask,
                    ),
                    Arg::NoneSet { index, mask } => (
                        index,
                        SeccompCmpArgLen::Qword,
                        SeccompCmpOp::MaskedEq(mask),
                        0,
                    ),
                };
                SeccompCondition::new(index, len, op, value).map_err(|e| err("seccomp", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        v.push(SeccompRule::new(conds).map_err(|e| err("seccomp", e))?);
    }
    Ok(map
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect())
}

fn set_rlimits(p: &Profile) -> Result<(), SandboxError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| err("RLIMIT_CORE", e))?;
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| err("RLIMIT_NOFILE", e))?;
    let n = p.nofile.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, n, n).map_err(|e| err("RLIMIT_NOFILE", e))?;
    Ok(())
}

fn fs_access(list: &[FsAccess]) -> BitFlags<AccessFs> {
    let mut a = BitFlags::empty();
    for x in list {
        a |= match x {
            FsAccess::Read => AccessFs::ReadFile | AccessFs::ReadDir,
            FsAccess::DeviceIoctl => BitFlags::from(AccessFs::IoctlDev),
            FsAccess::WriteFile => BitFlags::from(AccessFs::WriteFile),
        };
    }
    a
}

/// Only the landlock part of `helper`'s profile (what [`apply`] does in its second step); for
/// tests that must see landlock's own verdict where seccomp would answer first.
pub fn restrict_filesystem(helper: Role, require: bool) -> Result<Applied, SandboxError> {
    let mut applied = Applied::default();
    apply_landlock(&profile(helper), require, &mut applied)?;
    Ok(applied)
}

fn apply_landlock(p: &Profile, require: bool, applied: &mut Applied) -> Result<(), SandboxError> {
    let abi = LANDLOCK_TARGET;
    let level = if require {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let e = |e: landlock::RulesetError| err("landlock", e);
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(abi))
        .map_err(e)?
        .handle_access(AccessNet::from_all(abi))
        .map_err(e)?
        .scope(Scope::from_all(abi))
        .map_err(e)?
        .create()
        .map_err(e)?;
    for rule in p.fs {
        let fd = PathFd::new(rule.path).map_err(|x| err("landlock", x))?;
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, fs_access(rule.access)))
            .map_err(e)?;
    }
    let status = ruleset.restrict_self().map_err(e)?;
    applied.landlock_abi = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => Some(u8::try_from(kernel_abi.unwrap_or(effective_abi as i32)).unwrap_or(u8::MAX)),
        _ => None,
    };
    applied.landlock_fully_enforced = status.ruleset == RulesetStatus::FullyEnforced;
    match status.ruleset {
        RulesetStatus::FullyEnforced => {}
        RulesetStatus::PartiallyEnforced => applied.warnings.push(format!(
            "landlock only partially enforced (kernel ABI {:?}, profile wants {})",
            applied.landlock_abi, abi as i32
        )),
        RulesetStatus::NotEnforced => applied.warnings.push(
            "landlock is not available on this kernel: no filesystem restriction".to_string(),
        ),
    }
    if require && !applied.landlock_fully_enforced {
        return Err(err(
            "landlock",
            "required by policy (sandbox.require_landlock) but not fully enforced",
        ));
    }
    Ok(())
}

fn drop_capabilities(applied: &mut Applied) -> Result<(), SandboxError> {
    let e = |x: caps::errors::CapsError| err("capabilities", x);
    caps::clear(None, CapSet::Ambient).map_err(e)?;
    let had_setpcap = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).map_err(e)?;
    let mut bounding_left = 0;
    for cap in caps::all() {
        // Err: a capability this kernel does not know, so not in its bounding set.
        if let Ok(true) = caps::has_cap(None, CapSet::Bounding, cap) {
            if let Err(x) = caps::drop(None, CapSet::Bounding, cap) {
                if had_setpcap {
                    return Err(e(x));
                }
                bounding_left += 1;
            }
        }
    }
    caps::clear(None, CapSet::Inheritable).map_err(e)?;
    caps::clear(None, CapSet::Effective).map_err(e)?;
    caps::clear(None, CapSet::Permitted).map_err(e)?;
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        let left = caps::read(None, set).map_err(e)?;
        if !left.is_empty() {
            return Err(err("capabilities", format!("{set:?} still holds {left:?}")));
        }
    }
    if bounding_left > 0 {
        applied.warnings.push(format!(
            "{bounding_left} capabilities left in the bounding set (no CAP_SETPCAP to drop them)"
        ));
    }
    applied.capabilities_dropped = bounding_left == 0;
    Ok(())
}

fn set_no_new_privs() -> Result<(), SandboxError> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integer arguments only and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(err("no_new_privs", std::io::Error::last_os_error()));
    }
    // SAFETY: as above, a query.
    let on = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    if on != 1 {
        return Err(err("no_new_privs", "not set after PR_SET_NO_NEW_PRIVS"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_compiles() {
        for h in [Role::Checker, Role::Purger, Role::Listener] {
            let p = profile(h);
            let progs = compile(&p).map_err(|e| e.to_string());
            assert!(progs.is_ok(), "{h:?}: {progs:?}");
            for prog in progs.iter().flatten() {
                // BPF_MAXINSNS; also a rough measure of the per-syscall cost
                assert!(prog.len() < 4096, "{h:?}: {} instructions", prog.len());
                println!("{h:?}: a filter of {} instructions", prog.len());
            }
        }
    }

    #[test]
    fn only_the_checker_may_start_threads_and_nobody_exec_or_socket() {
        for h in [Role::Checker, Role::Purger, Role::Listener] {
            let p = profile(h);
            let has = |nr: i64| p.allow.iter().any(|a| a.nr == nr);
            assert_eq!(has(libc::SYS_clone), h == Role::Checker, "{h:?}");
            for nr in [
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_socket,
                libc::SYS_ptrace,
                libc::SYS_mount,
                libc::SYS_clone3,
            ] {
                assert!(!has(nr), "{h:?} allows {nr}");
            }
        }
    }

    #[test]
    fn ioctl_only_sg_io() {
        for h in [Role::Checker, Role::Purger] {
            let p = profile(h);
            let ioctls: Vec<_> = p.allow.iter().filter(|a| a.nr == libc::SYS_ioctl).collect();
            assert_eq!(ioctls.len(), 1);
            assert_eq!(
                ioctls[0].only,
                &[Arg::Eq32 {
                    index: 1,
                    value: SG_IO
                }]
            );
        }
        assert!(!profile(Role::Listener)
            .allow
            .iter()
            .any(|a| a.nr == libc::SYS_ioctl));
    }
}
