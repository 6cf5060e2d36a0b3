//! Process hygiene, proven by making this test process the child subreaper: any helper the
//! supervisor failed to reap, or that outlived it, is re-parented here and shows up in waitpid.
//! One test per binary, since the subreaper flag is process-wide.

mod common;

use common::*;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
}

#[test]
fn sigterm_leaves_no_process_and_no_zombie_and_sigkill_of_the_supervisor_ends_the_helpers() {
    become_subreaper();

    // 1. SIGTERM: all four exit 0, the supervisor reaps its helpers, nothing is re-parented.
    let mut d = Daemon::start("");
    let helpers = d.wait_ready();
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_exit(), 0);
    assert_eq!(
        waitpid(None, Some(WaitPidFlag::WNOHANG)),
        Err(nix::errno::Errno::ECHILD),
        "orphans left behind"
    );
    for (role, pid) in &helpers {
        assert!(!alive(*pid), "{role} still exists");
    }
    for (role, _) in &helpers {
        assert!(d
            .seen
            .iter()
            .any(|l| l.contains("exited with status 0") && l.contains(&format!("role={role}"))));
    }

    // 2. SIGKILL of the supervisor: every helper ends, either by PDEATHSIG's SIGKILL or, if it
    //    sees its channel close first, by exiting 0 on its own; they are re-parented to us
    //    and we reap every one of them.
    let mut d = Daemon::start("");
    let helpers = d.wait_ready();
    d.signal(Signal::SIGKILL);
    assert_eq!(d.wait_exit(), -1);
    let mut reaped = Vec::new();
    while reaped.len() < helpers.len() {
        match waitpid(None, None).unwrap() {
            WaitStatus::Signaled(pid, Signal::SIGKILL, _) | WaitStatus::Exited(pid, 0) => {
                reaped.push(pid.as_raw())
            }
            other => panic!("unexpected child status {other:?}"),
        }
    }
    reaped.sort();
    let mut want: Vec<i32> = helpers.iter().map(|(_, p)| *p).collect();
    want.sort();
    assert_eq!(reaped, want);
}
