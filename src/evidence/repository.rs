//! The ledger of one repository, as its policy says: where it lies (`[paths] evidence` as the
//! policy timeline trusts it), and how its records are judged (the timeline's keys and roles,
//! each step's `role=` from the SOPs). The evidence commands start here, so each reads the
//! corpus and the timeline once.

use std::path::PathBuf;

use super::signed::Judge;
use super::verify::Report;
use crate::config::Config;
use crate::workspace::Workspace;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    History(#[from] crate::approval::history::Error),
    #[error(transparent)]
    Evidence(#[from] super::Error),
    // git2's message alone: its Display adds class and code numbers (see tree::Error).
    #[error("git: {}", .0.message())]
    Git(#[from] git2::Error),
}

pub struct Ledger {
    pub root: PathBuf,
    /// The evidence folder, checked to lie inside the repository.
    pub dir: PathBuf,
    /// That folder as `[paths] evidence` names it.
    pub rel: String,
    /// The config the policy timeline trusts at `HEAD` (`[links]` from the tree).
    pub config: Config,
    pub judge: Judge,
}

impl Ledger {
    /// The ledger of the repository that `ws` read (its working tree).
    pub fn of(ws: &Workspace) -> Result<Ledger, Error> {
        let (root, corpus) = (ws.root.as_path(), &ws.corpus);
        // One policy timeline for where the ledger lies and how its records are judged.
        let timeline = crate::approval::history::timeline(root)?;
        let config = match &timeline {
            Some(t) => t.effective_config(&corpus.config),
            None => corpus.config.clone(),
        };
        let rel = config.paths.evidence.clone();
        let dir = super::folder(root, &rel)?;
        let judge = match &timeline {
            Some(t) => Judge::of_repo(root, t),
            None => Judge::default(),
        }
        .with_roles_of(corpus);
        Ok(Ledger {
            root: root.to_path_buf(),
            dir,
            rel,
            config,
            judge,
        })
    }

    /// `evidence verify`: the chains, logs, signatures and tokens as they are, and the ledger
    /// against git's history (read on a thread of its own meanwhile).
    pub fn verify(&self) -> Result<Report, Error> {
        std::thread::scope(|s| {
            let history = s.spawn(|| super::committed::changes(&self.root, &self.rel));
            let tracked = super::verify::tracked_at_head(&self.root, &self.rel);
            let mut report = super::verify::verify(&self.dir, &tracked, &self.judge);
            let changes = history
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            report.problems.extend(changes);
            Ok(report)
        })
    }
}
