//! The supervisor's view of its three helpers: which process runs each role, what phase its
//! conversation is in, and when a dead one may be restarted (exponential backoff inside a
//! restart budget).

use mpsup_ipc::{Channel, Hello, Role};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const BACKOFF_START: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where one helper stands.
pub enum HelperState {
    /// Process running, channel open. `hello` is set once it has said `Ready`.
    Running {
        pid: Pid,
        channel: Channel,
        hello: Option<Hello>,
    },
    /// Killed or exited; waiting for the kernel to let us reap it.
    Reaping { pid: Pid },
    /// Reaped; a new instance starts at `at`.
    Restarting { at: Instant },
    /// Not running and not coming back: stopped on request.
    Stopped,
    /// Not running and not coming back: crashed past its restart budget (or with
    /// `on_helper_crash = "exit"`), which fail-stops the supervisor.
    Failed,
}

pub struct Helper {
    pub role: Role,
    pub state: HelperState,
    /// Restart times within the policy's window.
    pub restarts: VecDeque<Instant>,
    pub total_restarts: u32,
    pub backoff: Duration,
}

impl Helper {
    pub fn new(role: Role) -> Self {
        Helper {
            role,
            state: HelperState::Stopped,
            restarts: VecDeque::new(),
            total_restarts: 0,
            backoff: BACKOFF_START,
        }
    }

    pub fn pid(&self) -> Option<Pid> {
        match &self.state {
            HelperState::Running { pid, .. } | HelperState::Reaping { pid } => Some(*pid),
            _ => None,
        }
    }

    pub fn state_word(&self) -> &'static str {
        match &self.state {
            HelperState::Running { hello: Some(_), .. } => "running",
            HelperState::Running { hello: None, .. } => "starting",
            HelperState::Reaping { .. } => "quiesced",
            HelperState::Restarting { .. } => "restarting",
            HelperState::Stopped => "stopped",
            HelperState::Failed => "failed",
        }
    }

    /// Records a crash at `now` and says when to restart, or `None` when the budget is spent.
    pub fn plan_restart(
        &mut self,
        now: Instant,
        max_restarts: u32,
        window: Duration,
    ) -> Option<Instant> {
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= max_restarts as usize {
            return None;
        }
        self.restarts.push_back(now);
        self.total_restarts += 1;
        let at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        Some(at)
    }

    /// A helper that has been up and talking resets its backoff.
    pub fn mark_healthy(&mut self) {
        self.backoff = BACKOFF_START;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_the_budget_runs_out_within_the_window() {
        let mut h = Helper::new(Role::Checker);
        let t0 = Instant::now();
        let window = Duration::from_secs(60);
        assert_eq!(
            h.plan_restart(t0, 3, window),
            Some(t0 + Duration::from_millis(100))
        );
        assert_eq!(
            h.plan_restart(t0, 3, window),
            Some(t0 + Duration::from_millis(200))
        );
        assert_eq!(
            h.plan_restart(t0, 3, window),
            Some(t0 + Duration::from_millis(400))
        );
        assert_eq!(
            h.plan_restart(t0, 3, window),
            None,
            "fourth crash in the window is over budget"
        );
        // Once the window has passed, old restarts no longer count.
        let later = t0 + Duration::from_secs(61);
        assert!(h.plan_restart(later, 3, window).is_some());
        assert_eq!(h.total_restarts, 4);
    }

    #[test]
    fn backoff_is_capped_and_reset_by_health() {
        let mut h = Helper::new(Role::Purger);
        let t0 = Instant::now();
        for _ in 0..20 {
            h.plan_restart(t0, 1000, Duration::from_secs(1));
        }
        assert_eq!(h.backoff, BACKOFF_MAX);
        h.mark_healthy();
        assert_eq!(h.backoff, BACKOFF_START);
    }
}
