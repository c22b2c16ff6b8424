//! The policy in force at a point of history: who the people are, which roles exist, which
//! public keys belong to whom. Built only from the files the policy timeline trusts at that
//! point (see [`super::timeline`]).

use std::collections::BTreeSet;

use crate::config::Paths;
use crate::corpus::people::{self, Person};
use crate::source::SourceFile;

use super::signature::Keyring;

#[derive(Debug, Default)]
pub struct Policy {
    pub people: Vec<Person>,
    pub roles: BTreeSet<String>,
    pub keyring: Keyring,
    /// Key files or people.yaml entries that could not be read.
    pub problems: Vec<String>,
}

/// The policy files of one point of history: path (from the repository root) → blob id.
pub type Files = std::collections::BTreeMap<String, git2::Oid>;

/// The bytes of a blob that the policy rests on, checked against its id. The history walk
/// reads objects without libgit2 re-hashing each (as git does), so a policy file is hashed
/// here: an object store edited in place cannot hand a trusted path other bytes.
pub fn verified_blob(repo: &git2::Repository, id: git2::Oid) -> Option<Vec<u8>> {
    let blob = repo.find_blob(id).ok()?;
    let bytes = blob.content();
    (git2::Oid::hash_object(git2::ObjectType::Blob, bytes).ok()? == id).then(|| bytes.to_vec())
}

impl Policy {
    /// Reads people.yaml, the keys it names and the role ids from a set of trusted policy
    /// files (see [`super::timeline`]); nothing is read from a tree directly.
    pub fn from_files(repo: &git2::Repository, files: &Files, paths: &Paths) -> Policy {
        let blob = |path: &str| -> Option<Vec<u8>> {
            let id = files.get(path)?;
            verified_blob(repo, *id)
        };
        let mut policy = Policy::default();
        let roles_dir = format!("{}/", paths.roles.trim_end_matches('/'));
        for path in files.keys() {
            if let Some(name) = path.strip_prefix(&roles_dir)
                && !name.contains('/')
                && let Some(stem) = name.strip_suffix(".md")
                && !stem.eq_ignore_ascii_case("readme")
                && !stem.eq_ignore_ascii_case("index")
            {
                policy.roles.insert(stem.to_string());
            }
        }
        let Some(bytes) = blob(&paths.people) else {
            return policy;
        };
        let file = SourceFile::new(
            paths.people.clone(),
            String::from_utf8_lossy(&bytes).into_owned(),
        );
        let mut diags = Vec::new();
        policy.people = people::parse(&file, &mut diags);
        policy.problems.extend(diags.into_iter().map(|d| d.message));
        for person in &policy.people {
            for key in &person.keys {
                let Some(path) = crate::tree::normalize(&format!("{}/{}", paths.keys, key.value))
                else {
                    policy
                        .problems
                        .push(format!("key file `{}` leaves the repository", key.value));
                    continue;
                };
                match blob(&path) {
                    Some(bytes) => {
                        if let Err(e) = policy.keyring.add_file(&person.id.value, &path, &bytes) {
                            policy.problems.push(e.to_string());
                        }
                    }
                    None => policy
                        .problems
                        .push(format!("key file `{path}` does not exist")),
                }
            }
        }
        policy
    }

    /// Whether some admin has a key that loaded: only then can anyone sign a later change.
    pub fn has_signing_admin(&self) -> bool {
        self.people
            .iter()
            .any(|p| p.admin && self.keyring.has_owner(&p.id.value))
    }

    pub fn person(&self, id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.id.value == id)
    }

    pub fn person_by_email(&self, email: &str) -> Option<&Person> {
        self.people
            .iter()
            .find(|p| p.email.eq_ignore_ascii_case(email))
    }
}
