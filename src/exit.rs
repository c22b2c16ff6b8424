//! The exit codes every command keeps, as the README promises them.

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done, nothing found.
    Clean,
    /// Done, and something needs attention: findings, alerts, a failed step or check.
    Findings,
    /// Wrong usage, or an error that stopped the command.
    Fatal,
    /// A step was interrupted (as by Ctrl-C).
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Clean => 0,
            Exit::Findings => 1,
            Exit::Fatal => 2,
            Exit::Interrupted => 130,
        }
    }

    /// [`Exit::Clean`] when `ok`, else [`Exit::Findings`].
    pub fn findings_unless(ok: bool) -> Exit {
        if ok { Exit::Clean } else { Exit::Findings }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> std::process::ExitCode {
        std::process::ExitCode::from(e.code())
    }
}
