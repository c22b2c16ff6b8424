//! The policy in force at a point of history: who the people are, which roles exist, which
//! public keys belong to whom. Read straight from a commit's tree, and trusted only along
//! the chain that starts at the trust root (see [`super::history`]).

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

/// What identifies the policy files' content in a tree: the ids of people.yaml, the roles
/// folder and the keys folder. Two commits with the same fingerprint share one policy.
pub type Fingerprint = [Option<git2::Oid>; 3];

pub fn fingerprint(tree: &git2::Tree<'_>, paths: &Paths) -> Fingerprint {
    let id = |p: &str| tree.get_path(std::path::Path::new(p)).ok().map(|e| e.id());
    [id(&paths.people), id(&paths.roles), id(&paths.keys)]
}

fn blob(repo: &git2::Repository, tree: &git2::Tree<'_>, path: &str) -> Option<Vec<u8>> {
    let entry = tree.get_path(std::path::Path::new(path)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    Some(blob.content().to_vec())
}

impl Policy {
    /// Reads people.yaml, the keys it names and the role ids of a commit's tree.
    pub fn load(repo: &git2::Repository, tree: &git2::Tree<'_>, paths: &Paths) -> Policy {
        let mut policy = Policy::default();
        if let Ok(entry) = tree.get_path(std::path::Path::new(&paths.roles))
            && let Ok(obj) = entry.to_object(repo)
            && let Some(roles) = obj.as_tree()
        {
            for e in roles.iter() {
                if let Ok(name) = e.name()
                    && let Some(stem) = name.strip_suffix(".md")
                    && !stem.eq_ignore_ascii_case("readme")
                    && !stem.eq_ignore_ascii_case("index")
                {
                    policy.roles.insert(stem.to_string());
                }
            }
        }
        let Some(bytes) = blob(repo, tree, &paths.people) else {
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
                match blob(repo, tree, &path) {
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

    pub fn person(&self, id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.id.value == id)
    }

    pub fn person_by_email(&self, email: &str) -> Option<&Person> {
        self.people
            .iter()
            .find(|p| p.email.eq_ignore_ascii_case(email))
    }
}
