//! S3-compatible object storage (AWS, MinIO, Ceph, moto, ...): `upload` of files with
//! SHA-256 checksums, `verify` of stored objects and their versions, `restore` of a version
//! into a local file, and `prune` of old versions by retention.
//!
//! A step names a `kind = "s3"` target (`target: NAME`); its endpoint, region, bucket,
//! `prefix` (put before every key) and `path_style` come from `sopkit.toml`, and its
//! credentials only from the environment variables the target names (`access_key_env`,
//! `secret_key_env`). Credential values are never printed, logged or recorded: any message
//! that could carry one is masked.
//!
//! Every object `upload` writes carries its whole-content SHA-256 as user metadata
//! (`sopkit-sha256`, hex), because the SHA-256 checksum S3 keeps for a multipart object is a
//! checksum of the part checksums, not of the content; `verify` and `restore` check the
//! bytes they download against it. Each action runs the AWS SDK on a current-thread tokio
//! runtime of its own and streams with constant memory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ObjectLockEnabled,
    ObjectLockLegalHoldStatus,
};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::config::{Target, TargetKind};

use crate::corpus::step::args::{MAX_PART, MIN_PART};
use crate::run::stream::{self, Error, hex, io};

/// User metadata key of the whole-content SHA-256 (hex) that `upload` stores.
pub const META_SHA256: &str = "sopkit-sha256";

/// User metadata key of the part size of a multipart upload (bytes), so that `verify` can
/// recompute the composite SHA-256 checksum the server keeps.
pub const META_PART_SIZE: &str = "sopkit-part-size";

/// S3's most parts in one upload.
pub(crate) const MAX_PARTS: u64 = 10_000;

/// Default part size, raised for files that would need more than 10,000 parts. 16 MiB
/// uploaded 1 GiB to moto in 9.4 and 11.5 s where 64 MiB took 12.9 and 15.3 s (servers buffer a
/// part before they check it), and keeps the retry of a failed part cheap.
pub(crate) const DEFAULT_PART: u64 = 16 << 20;

/// Parts sent at once. Each streams from disk, so memory does not grow with it.
pub(crate) const PARTS_IN_FLIGHT: usize = 4;

/// Read size when hashing a file or a download.
pub(crate) const BUF: usize = 1 << 20;

/// A bucket to talk to, and what to mask in anything we say about it.
pub(crate) struct Remote {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) client: Client,
    /// The target's name in `sopkit.toml`.
    pub(crate) name: String,
    pub(crate) bucket: String,
    /// The target's key prefix, without a trailing `/` (may be empty).
    pub(crate) prefix: String,
    pub(crate) endpoint: String,
    /// Credential values, masked out of every message.
    pub(crate) secrets: Vec<String>,
}

impl Remote {
    /// The target `name` (an action's `target` argument), with a client built from its settings
    /// and the credentials in the environment variables it names.
    pub(crate) fn connect(
        name: String,
        targets: &BTreeMap<String, Target>,
    ) -> Result<Remote, Error> {
        let t = targets.get(&name).ok_or_else(|| Error::Argument {
            name: "target",
            message: format!("target `{name}` is not defined in sopkit.toml"),
        })?;
        if t.kind != TargetKind::S3 {
            return Err(Error::Argument {
                name: "target",
                message: format!("target `{name}` is not an S3 target (kind = \"s3\")"),
            });
        }
        let bucket = t.bucket.clone().ok_or_else(|| Error::Argument {
            name: "target",
            message: format!("target `{name}` needs `bucket`"),
        })?;
        let cred = |field: &str, var: &Option<String>| -> Result<String, Error> {
            let var = var.as_deref().ok_or_else(|| Error::Argument {
                name: "target",
                message: format!(
                    "target `{name}` names no `{field}` (the environment variable holding the credential)"
                ),
            })?;
            match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(v),
                _ => Err(Error::Argument {
                    name: "target",
                    message: format!(
                        "environment variable {var} ({field} of target `{name}`) is not set"
                    ),
                }),
            }
        };
        let access = cred("access_key_env", &t.access_key_env)?;
        let secret = cred("secret_key_env", &t.secret_key_env)?;
        let region = t.region.clone().unwrap_or_else(|| "us-east-1".to_string());
        let mut conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(region.clone()))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &access, &secret, None, None, "sopkit",
            ))
            .force_path_style(t.path_style.unwrap_or(false))
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(10))
                    .build(),
            );
        let endpoint = match &t.endpoint {
            Some(e) => {
                conf = conf.endpoint_url(e);
                e.clone()
            }
            None => format!("AWS S3 ({region})"),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io(Path::new("tokio runtime")))?;
        Ok(Remote {
            rt,
            client: Client::from_conf(conf.build()),
            name,
            bucket,
            prefix: t
                .prefix
                .clone()
                .unwrap_or_default()
                .trim_matches('/')
                .to_string(),
            endpoint,
            secrets: vec![access, secret],
        })
    }

    pub(crate) fn mask(&self, text: &str) -> String {
        let mut s = text.to_string();
        for v in self.secrets.iter().filter(|v| v.len() >= 4) {
            s = s.replace(v.as_str(), crate::run::redact::MASK);
        }
        s
    }

    pub(crate) fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// An error from the service or the connection, as `s3://BUCKET/KEY: what happened`.
    pub(crate) fn fail<E>(&self, key: &str, doing: &str, e: &SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Error::Io {
            path: PathBuf::from(self.url(key)),
            message: self.mask(&format!("{doing}: {}", self.explain(e))),
        }
    }

    pub(crate) fn explain<E>(&self, e: &SdkError<E, HttpResponse>) -> String
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match e {
            SdkError::ServiceError(s) => {
                let err = s.err();
                let status = s.raw().status().as_u16();
                let Some(code) = err.code() else {
                    return format!("HTTP {status}: {}", chain(e));
                };
                let hint = match code {
                    "NoSuchBucket" => format!(
                        " (bucket `{}` of target `{}` does not exist at {})",
                        self.bucket, self.name, self.endpoint
                    ),
                    "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" => format!(
                        " (check the credentials of target `{}` and what they may do)",
                        self.name
                    ),
                    _ => String::new(),
                };
                match err.message() {
                    Some(m) => format!("{code}: {m}{hint}"),
                    None => format!("{code}{hint}"),
                }
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
                "cannot reach {} (target `{}`): {}",
                self.endpoint,
                self.name,
                chain(e)
            ),
            _ => chain(e),
        }
    }

    /// `KEY` under the target's prefix.
    pub(crate) fn key(&self, key: &str) -> Result<String, Error> {
        object_key(&self.prefix, key)
    }
}

/// An error and its sources, `a: b: c`, without repeats.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Is this a service error with one of these codes?
pub(crate) fn has_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>, codes: &[&str]) -> bool {
    match e {
        SdkError::ServiceError(s) => s.err().code().is_some_and(|c| codes.contains(&c)),
        _ => false,
    }
}

pub(crate) fn is_service_error<E, R>(e: &SdkError<E, R>) -> bool {
    matches!(e, SdkError::ServiceError(_))
}

/// `key` placed under `prefix` (both without leading or trailing `/`): `prefix/key`.
/// Rejects empty keys and `.`/`..` segments, which some tools turn into paths.
pub fn object_key(prefix: &str, key: &str) -> Result<String, Error> {
    let key = key.trim_start_matches('/');
    let bad = |message: String| Error::Argument {
        name: "key",
        message,
    };
    if key.is_empty() {
        return Err(bad("an object key cannot be empty".into()));
    }
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(bad(format!(
            "`{key}`: `.` and `..` are not allowed in keys"
        )));
    }
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    })
}

/// The keys (before the target's prefix) for files with these names (`name`: the file's
/// path relative to what was named as the source, `/`-separated). `key`: the object key
/// when one file is sent (a key ending in `/` is a prefix), the prefix when several are;
/// without it, the names themselves.
pub fn upload_keys(names: &[String], key: Option<&str>) -> Result<Vec<String>, Error> {
    let out: Vec<String> = match key.map(|k| k.trim_start_matches('/')) {
        Some(k) if names.len() == 1 && !k.ends_with('/') && !k.is_empty() => vec![k.to_string()],
        Some(k) => {
            let k = k.trim_end_matches('/');
            names
                .iter()
                .map(|n| {
                    if k.is_empty() {
                        n.clone()
                    } else {
                        format!("{k}/{n}")
                    }
                })
                .collect()
        }
        None => names.to_vec(),
    };
    let mut seen = std::collections::BTreeSet::new();
    for k in &out {
        object_key("", k)?;
        if !seen.insert(k.clone()) {
            return Err(Error::Argument {
                name: "key",
                message: format!("two files would be uploaded to the same key `{k}`"),
            });
        }
    }
    Ok(out)
}

/// The part size for a file of `len` bytes: the one asked for (S3's 5 MiB to 5 GiB),
/// raised if the file would otherwise need more than 10,000 parts.
pub fn part_size_for(asked: u64, len: u64) -> u64 {
    let fit = len.div_ceil(MAX_PARTS);
    asked.max(fit).clamp(MIN_PART, MAX_PART)
}

/// SHA-256 of a whole stream and of each `part_size` slice of it, as it passes.
pub struct PartHasher {
    part_size: u64,
    /// `None` when only the parts are wanted, `part` `None` when only the whole is.
    whole: Option<Sha256>,
    part: Option<Sha256>,
    in_part: u64,
    pub len: u64,
    pub parts: Vec<[u8; 32]>,
}

impl PartHasher {
    pub fn new(part_size: u64) -> PartHasher {
        PartHasher {
            part_size: part_size.max(1),
            whole: Some(Sha256::new()),
            part: Some(Sha256::new()),
            in_part: 0,
            len: 0,
            parts: Vec::new(),
        }
    }

    /// Hashes each part only; `finish` then gives the whole hash as zeros.
    pub fn parts_only(part_size: u64) -> PartHasher {
        PartHasher {
            whole: None,
            ..PartHasher::new(part_size)
        }
    }

    /// Hashes the whole only; `finish` then gives no part hashes.
    pub fn whole_only() -> PartHasher {
        PartHasher {
            part: None,
            ..PartHasher::new(u64::MAX)
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        if let Some(w) = &mut self.whole {
            w.update(data);
        }
        self.len += data.len() as u64;
        let Some(part) = &mut self.part else {
            return;
        };
        while !data.is_empty() {
            let room = (self.part_size - self.in_part) as usize;
            let n = room.min(data.len());
            part.update(&data[..n]);
            self.in_part += n as u64;
            data = &data[n..];
            if self.in_part == self.part_size {
                self.parts.push(part.finalize_reset().into());
                self.in_part = 0;
            }
        }
    }

    /// The whole stream's SHA-256 and each part's (an empty stream has one empty part).
    pub fn finish(mut self) -> ([u8; 32], Vec<[u8; 32]>) {
        if let Some(part) = self.part
            && (self.in_part > 0 || self.parts.is_empty())
        {
            self.parts.push(part.finalize().into());
        }
        (
            self.whole.map_or([0; 32], |w| w.finalize().into()),
            self.parts,
        )
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The SHA-256 checksum S3 keeps for a multipart object: the SHA-256 of the parts'
/// SHA-256 digests, base64, then `-` and the number of parts.
pub fn composite_checksum(parts: &[[u8; 32]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    format!("{}-{}", b64(&h.finalize()), parts.len())
}

/// Does a stored SHA-256 checksum match? `None`: it cannot be told (a composite checksum,
/// and the part size is not known). A composite one (`BASE64-N`) is compared with the
/// parts' composite, a plain one with the whole content's digest or, for a multipart
/// object, the composite without its `-N` (moto 5.2 leaves the count off).
pub(crate) fn checksum_matches(
    stored: &str,
    whole: &[u8; 32],
    parts: Option<&[[u8; 32]]>,
) -> Option<bool> {
    match (stored.contains('-'), parts) {
        (true, None) => None,
        (true, Some(p)) => Some(composite_checksum(p) == stored),
        (false, _) if stored == b64(whole) => Some(true),
        (false, Some(p)) if p.len() > 1 => Some(
            composite_checksum(p)
                .rsplit_once('-')
                .is_some_and(|(base, _)| base == stored),
        ),
        (false, _) => Some(false),
    }
}

/// What one upload left in the bucket.
pub(crate) struct Uploaded {
    pub(crate) key: String,
    pub(crate) version: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    pub(crate) parts: usize,
}

/// Can we reach the bucket? (HeadBucket: cheap, and a wrong bucket, wrong credentials or an
/// unreachable server show here, before a large file is hashed.)
pub(crate) async fn preflight(remote: &Remote) -> Result<(), Error> {
    match remote
        .client
        .head_bucket()
        .bucket(&remote.bucket)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(s)) if matches!(s.raw().status().as_u16(), 404 | 403) => {
            let message = if s.raw().status().as_u16() == 404 {
                format!(
                    "NoSuchBucket: bucket `{}` of target `{}` does not exist at {}",
                    remote.bucket, remote.name, remote.endpoint
                )
            } else {
                format!(
                    "AccessDenied: the credentials of target `{}` may not use bucket `{}` (or are wrong)",
                    remote.name, remote.bucket
                )
            };
            Err(Error::Io {
                path: PathBuf::from(remote.url("")),
                message,
            })
        }
        Err(e) => Err(remote.fail("", "reaching the bucket", &e)),
    }
}

/// A file as hashed before it is sent.
pub(crate) struct Hashed<'a> {
    pub(crate) path: &'a Path,
    pub(crate) len: u64,
    pub(crate) part_size: u64,
    /// One digest per part (one in all for a single PUT).
    pub(crate) parts: Vec<[u8; 32]>,
    /// The whole content's SHA-256, hex.
    pub(crate) sha256: String,
    pub(crate) whole: [u8; 32],
}

/// The SHA-256 of each `part_size` part of the bytes received on `chunks`.
pub(crate) fn hash_parts<B: AsRef<[u8]>>(
    chunks: std::sync::mpsc::Receiver<B>,
    part_size: u64,
) -> Vec<[u8; 32]> {
    let mut h = PartHasher::parts_only(part_size);
    for chunk in chunks {
        h.update(chunk.as_ref());
    }
    h.finish().1
}

/// Hashes `path` whole and per part. The two hashes are computed on two threads, each
/// reading the file (from the page cache, in the common case of a file just written), since
/// one SHA-256 stream cannot be split; this halves the wait before the first byte is sent.
/// A file whose size or modification time changes meanwhile is refused.
pub(crate) fn hash_file(path: &Path, part_size: u64) -> Result<Hashed<'_>, Error> {
    let stamp = || -> Result<(u64, Option<std::time::SystemTime>), Error> {
        let m = std::fs::metadata(path).map_err(io(path))?;
        Ok((m.len(), m.modified().ok()))
    };
    let before = stamp()?;
    let hash_with = |mut h: PartHasher| -> Result<PartHasher, Error> {
        let mut f = std::fs::File::open(path).map_err(io(path))?;
        let mut buf = Vec::new();
        while stream::fill(&mut f, &mut buf).map_err(io(path))? > 0 {
            h.update(&buf);
        }
        Ok(h)
    };
    let (whole, parts) = if part_size >= before.0 {
        // One part: its hash is the whole content's.
        let (whole, _) = hash_with(PartHasher::whole_only())?.finish();
        (whole, vec![whole])
    } else {
        std::thread::scope(|s| {
            let parts = s.spawn(|| hash_with(PartHasher::parts_only(part_size)));
            let whole = hash_with(PartHasher::whole_only());
            let parts = parts
                .join()
                .map_err(|_| Error::Failed("hashing stopped".into()))?;
            let (_, parts) = parts?.finish();
            let (whole, _) = whole?.finish();
            Ok::<_, Error>((whole, parts))
        })?
    };
    if stamp()? != before {
        return Err(Error::Io {
            path: path.to_path_buf(),
            message: "changed while being hashed".into(),
        });
    }
    Ok(Hashed {
        path,
        len: before.0,
        part_size,
        parts,
        sha256: hex(whole),
        whole,
    })
}

pub(crate) async fn file_body(path: &Path, offset: u64, len: u64) -> Result<ByteStream, Error> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(len))
        .buffer_size(256 << 10)
        .build()
        .await
        .map_err(|e| Error::Io {
            path: path.to_path_buf(),
            message: chain(&e),
        })
}

pub(crate) async fn upload_one(
    remote: &Remote,
    path: &Path,
    key: &str,
    part_size: u64,
) -> Result<Uploaded, Error> {
    let len = std::fs::metadata(path).map_err(io(path))?.len();
    let part_size = part_size_for(part_size, len);
    let file = hash_file(path, part_size)?;
    if file.len != len {
        return Err(Error::Io {
            path: path.to_path_buf(),
            message: "changed size while being hashed".into(),
        });
    }
    let (whole, parts, sha256) = (file.whole, file.parts.clone(), file.sha256.clone());
    let c = &remote.client;
    if parts.len() == 1 {
        let body = file_body(path, 0, len).await?;
        let put = c
            .put_object()
            .bucket(&remote.bucket)
            .key(key)
            .body(body)
            .content_length(len as i64)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(b64(&whole))
            .metadata(META_SHA256, &sha256)
            .send()
            .await
            .map_err(|e| remote.fail(key, "upload", &e))?;
        if let Some(stored) = put.checksum_sha256()
            && checksum_matches(stored, &whole, None) == Some(false)
        {
            return Err(Error::Failed(format!(
                "{}: the server stored SHA-256 checksum {stored}, expected {}",
                remote.url(key),
                b64(&whole)
            )));
        }
        return Ok(Uploaded {
            key: key.to_string(),
            version: put.version_id().unwrap_or("null").to_string(),
            size: len,
            sha256,
            parts: 1,
        });
    }

    let created = c
        .create_multipart_upload()
        .bucket(&remote.bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .metadata(META_SHA256, &sha256)
        .metadata(META_PART_SIZE, part_size.to_string())
        .send()
        .await
        .map_err(|e| remote.fail(key, "starting a multipart upload", &e))?;
    let Some(upload_id) = created.upload_id().map(str::to_string) else {
        return Err(Error::Failed(format!(
            "{}: the server started a multipart upload without an upload id",
            remote.url(key)
        )));
    };
    match send_parts(remote, key, &upload_id, &file).await {
        Ok((version, stored)) => {
            if let Some(stored) = stored.as_deref()
                && checksum_matches(stored, &whole, Some(&parts)) == Some(false)
            {
                return Err(Error::Failed(format!(
                    "{} version {version}: the server stored SHA-256 checksum {stored}, expected {}",
                    remote.url(key),
                    composite_checksum(&parts)
                )));
            }
            Ok(Uploaded {
                key: key.to_string(),
                version,
                size: len,
                sha256,
                parts: parts.len(),
            })
        }
        Err(e) => {
            let aborted = c
                .abort_multipart_upload()
                .bucket(&remote.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(match aborted {
                Ok(_) => e,
                Err(a) => Error::Failed(format!(
                    "{e}; and aborting multipart upload {upload_id} failed too ({}): abort it by hand or let a lifecycle rule remove it",
                    remote.explain(&a)
                )),
            })
        }
    }
}

/// Sends the parts (a few at a time) and completes the upload: the version id and the
/// checksum the server reports.
pub(crate) async fn send_parts(
    remote: &Remote,
    key: &str,
    upload_id: &str,
    file: &Hashed<'_>,
) -> Result<(String, Option<String>), Error> {
    let (path, part_size, len) = (file.path, file.part_size, file.len);
    let (digests, sha256) = (&file.parts, file.sha256.as_str());
    let mut tasks = tokio::task::JoinSet::new();
    let mut done: Vec<CompletedPart> = Vec::with_capacity(digests.len());
    let mut next = 0usize;
    loop {
        while next < digests.len() && tasks.len() < PARTS_IN_FLIGHT {
            let offset = next as u64 * part_size;
            let n = part_size.min(len - offset);
            let body = file_body(path, offset, n).await?;
            let number = next as i32 + 1;
            let checksum = b64(&digests[next]);
            let req = remote
                .client
                .upload_part()
                .bucket(&remote.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(body)
                .content_length(n as i64)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(checksum.clone());
            tasks.spawn(async move { (number, checksum, req.send().await) });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (number, checksum, sent) = joined.map_err(|e| Error::Failed(e.to_string()))?;
        let sent = sent.map_err(|e| remote.fail(key, &format!("upload of part {number}"), &e))?;
        if let Some(stored) = sent.checksum_sha256()
            && stored != checksum
        {
            return Err(Error::Failed(format!(
                "{}: part {number}: the server stored SHA-256 checksum {stored}, expected {checksum}",
                remote.url(key)
            )));
        }
        done.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(sent.e_tag().map(str::to_string))
                .checksum_sha256(checksum)
                .build(),
        );
    }
    done.sort_by_key(|p| p.part_number());
    let completed = remote
        .client
        .complete_multipart_upload()
        .bucket(&remote.bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await;
    match completed {
        Ok(c) => Ok((
            c.version_id().unwrap_or("null").to_string(),
            c.checksum_sha256().map(str::to_string),
        )),
        // The server said 200 but its answer could not be read (moto 5.2 names the XML
        // root differently): what it made is then read back with HEAD and must be this
        // content, by size and `sopkit-sha256`, in this many parts.
        Err(SdkError::ServiceError(e)) if e.raw().status().is_success() => {
            let head = remote
                .client
                .head_object()
                .bucket(&remote.bucket)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .map_err(|e| remote.fail(key, "reading back the completed upload", &e))?;
            let sha = head.metadata().and_then(|m| m.get(META_SHA256));
            let parts_tag = format!("-{}", digests.len());
            let ours = head.content_length() == Some(len as i64)
                && sha.is_some_and(|s| s.eq_ignore_ascii_case(sha256))
                && head
                    .e_tag()
                    .is_some_and(|t| t.trim_matches('"').ends_with(&parts_tag));
            if !ours {
                return Err(remote.fail(
                    key,
                    "completing the multipart upload",
                    &SdkError::ServiceError(e),
                ));
            }
            Ok((
                head.version_id().unwrap_or("null").to_string(),
                head.checksum_sha256().map(str::to_string),
            ))
        }
        Err(e) => Err(remote.fail(key, "completing the multipart upload", &e)),
    }
}

/// One version of an object, or a delete marker, as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub key: String,
    pub id: String,
    /// When it was written, UTC seconds.
    pub time: i64,
    pub latest: bool,
    pub delete_marker: bool,
}

/// Every version and delete marker under `prefix`, newest first within each key.
pub(crate) async fn list_versions(remote: &Remote, prefix: &str) -> Result<Vec<Version>, Error> {
    let mut out = Vec::new();
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = remote
            .client
            .list_object_versions()
            .bucket(&remote.bucket)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .map_err(|e| remote.fail(prefix, "listing versions", &e))?;
        for v in page.versions() {
            out.push(Version {
                key: v.key().unwrap_or_default().to_string(),
                id: v.version_id().unwrap_or("null").to_string(),
                time: v.last_modified().map_or(0, |t| t.secs()),
                latest: v.is_latest().unwrap_or(false),
                delete_marker: false,
            });
        }
        for m in page.delete_markers() {
            out.push(Version {
                key: m.key().unwrap_or_default().to_string(),
                id: m.version_id().unwrap_or("null").to_string(),
                time: m.last_modified().map_or(0, |t| t.secs()),
                latest: m.is_latest().unwrap_or(false),
                delete_marker: true,
            });
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
        if key_marker.is_none() && version_marker.is_none() {
            break;
        }
    }
    // Newest first per key, the latest before the others when times tie.
    out.sort_by(|a, b| {
        a.key
            .cmp(&b.key)
            .then(b.latest.cmp(&a.latest))
            .then(b.time.cmp(&a.time))
    });
    Ok(out)
}

/// The keys a `key` argument names: the object itself when one exists there, otherwise every
/// current object under it as a prefix (where `upload` puts several files), in key order.
/// Nothing there at all is an error naming the key.
pub(crate) async fn keys_named(remote: &Remote, key: &str) -> Result<Vec<String>, Error> {
    let all = list_versions(remote, key).await?;
    let current = |v: &&Version| v.latest && !v.delete_marker;
    if all.iter().filter(current).any(|v| v.key == key) {
        return Ok(vec![key.to_string()]);
    }
    let prefix = format!("{}/", key.trim_end_matches('/'));
    let mut keys: Vec<String> = all
        .iter()
        .filter(current)
        .filter(|v| v.key.starts_with(&prefix))
        .map(|v| v.key.clone())
        .collect();
    keys.dedup();
    if keys.is_empty() {
        return Err(Error::Failed(format!(
            "{}: no object there, and none under it",
            remote.url(key)
        )));
    }
    Ok(keys)
}

/// The object versions (no delete markers) of exactly `key`, newest first.
pub(crate) async fn versions_of(remote: &Remote, key: &str) -> Result<Vec<Version>, Error> {
    let mut all = list_versions(remote, key).await?;
    all.retain(|v| v.key == key && !v.delete_marker);
    all.sort_by(|a, b| b.time.cmp(&a.time).then(b.latest.cmp(&a.latest)));
    Ok(all)
}

/// What a download of one version showed.
pub(crate) struct Downloaded {
    pub(crate) version: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    /// Problems found, empty when the content matches everything stored with it.
    pub(crate) problems: Vec<String>,
    /// What matched, for the record.
    pub(crate) checked: Vec<&'static str>,
}

/// Downloads one version (the latest when `version` is `None`), passes every chunk to
/// `sink`, and compares the content with the `sopkit-sha256` metadata, the size and the
/// stored SHA-256 checksum.
pub(crate) async fn download(
    remote: &Remote,
    key: &str,
    version: Option<&str>,
    sink: &mut dyn Write,
    sink_path: &Path,
) -> Result<Downloaded, Error> {
    let got = remote
        .client
        .get_object()
        .bucket(&remote.bucket)
        .key(key)
        .set_version_id(version.map(str::to_string))
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .map_err(|e| {
            let what = match version {
                Some(v) => format!("reading version {v}"),
                None => "reading the latest version".to_string(),
            };
            remote.fail(key, &what, &e)
        })?;
    let version = got.version_id().or(version).unwrap_or("null").to_string();
    let expected_len = got.content_length().and_then(|n| u64::try_from(n).ok());
    let meta_sha = got
        .metadata()
        .and_then(|m| m.get(META_SHA256))
        .map(|s| s.to_ascii_lowercase());
    let part_size = got
        .metadata()
        .and_then(|m| m.get(META_PART_SIZE))
        .and_then(|s| s.parse::<u64>().ok());
    let stored = got.checksum_sha256().map(str::to_string);
    // The part hashes of a multipart object are computed on a thread of their own, beside
    // the whole content's hash here: two SHA-256 streams over the same bytes on two cores.
    let parts_thread = part_size.map(|size| {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        (tx, std::thread::spawn(move || hash_parts(rx, size)))
    });
    let mut hasher = PartHasher::whole_only();
    let mut body = got.body;
    loop {
        match body.try_next().await {
            Ok(Some(chunk)) => {
                hasher.update(&chunk);
                sink.write_all(&chunk).map_err(io(sink_path))?;
                if let Some((tx, _)) = &parts_thread {
                    // A send fails only if the thread is gone; the join below says why.
                    let _ = tx.send(chunk);
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(Error::Failed(remote.mask(&format!(
                    "{} version {version}: download failed: {}",
                    remote.url(key),
                    chain(&e)
                ))));
            }
        }
    }
    let size = hasher.len;
    let (whole, _) = hasher.finish();
    let parts = match parts_thread {
        Some((tx, thread)) => {
            drop(tx);
            thread
                .join()
                .map_err(|_| Error::Failed("hashing the parts stopped unexpectedly".into()))?
        }
        None => Vec::new(),
    };
    let sha256 = hex(whole);
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    if let Some(n) = expected_len
        && n != size
    {
        problems.push(format!("{size} bytes received, {n} announced"));
    }
    match meta_sha {
        None => problems.push(format!(
            "no {META_SHA256} metadata (not uploaded by sopkit): its content cannot be checked"
        )),
        Some(m) if m == sha256 => checked.push(META_SHA256),
        Some(m) => problems.push(format!(
            "content sha256 {sha256}, but {META_SHA256} says {m}"
        )),
    }
    if let Some(stored) = &stored {
        let parts = part_size.map(|_| parts.as_slice());
        match checksum_matches(stored, &whole, parts) {
            Some(true) => checked.push("the stored SHA-256 checksum"),
            Some(false) => problems.push(format!(
                "the stored SHA-256 checksum is {stored}, the content's is {}",
                if stored.contains('-') {
                    parts.map(composite_checksum).unwrap_or_default()
                } else {
                    b64(&whole)
                }
            )),
            None => {}
        }
    }
    Ok(Downloaded {
        version,
        size,
        sha256,
        problems,
        checked,
    })
}

/// Why object lock keeps this version, if it does: a legal hold, or a retention whose
/// retain-until date is after `now`. Errors that leave the answer unknown fail: a version
/// is never deleted unchecked.
pub(crate) async fn lock_reason(
    remote: &Remote,
    v: &Version,
    now: i64,
) -> Result<Option<String>, Error> {
    const NONE: &[&str] = &[
        "NoSuchObjectLockConfiguration",
        "ObjectLockConfigurationNotFoundError",
    ];
    let c = &remote.client;
    let mut head: Option<aws_sdk_s3::operation::head_object::HeadObjectOutput> = None;
    let head_of = |remote: &Remote| {
        remote
            .client
            .head_object()
            .bucket(&remote.bucket)
            .key(&v.key)
            .version_id(&v.id)
            .send()
    };
    let what = format!("version {}", v.id);
    match c
        .get_object_legal_hold()
        .bucket(&remote.bucket)
        .key(&v.key)
        .version_id(&v.id)
        .send()
        .await
    {
        Ok(h) => {
            if h.legal_hold().and_then(|h| h.status()) == Some(&ObjectLockLegalHoldStatus::On) {
                return Ok(Some("legal hold".into()));
            }
        }
        Err(e) if has_code(&e, NONE) => {}
        Err(e) if is_service_error(&e) => {
            // A server without GetObjectLegalHold: HEAD reports the hold too.
            let h = head_of(remote)
                .await
                .map_err(|e| remote.fail(&v.key, &format!("reading {what}"), &e))?;
            if h.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On) {
                return Ok(Some("legal hold".into()));
            }
            head = Some(h);
        }
        Err(e) => {
            return Err(remote.fail(&v.key, &format!("reading the legal hold of {what}"), &e));
        }
    }
    let until_reason = |until: i64, mode: Option<&str>| {
        (until > now).then(|| {
            format!(
                "object lock retention{} until {}",
                mode.map(|m| format!(" ({m})")).unwrap_or_default(),
                crate::time::rfc3339(until)
            )
        })
    };
    // One attempt: a server that does not implement it answers the same every time.
    let retention = c
        .get_object_retention()
        .bucket(&remote.bucket)
        .key(&v.key)
        .version_id(&v.id)
        .customize()
        .config_override(
            aws_sdk_s3::config::Builder::default()
                .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled()),
        )
        .send()
        .await;
    match retention {
        Ok(r) => {
            let r = r.retention();
            Ok(r.and_then(|r| r.retain_until_date())
                .and_then(|d| until_reason(d.secs(), r.and_then(|r| r.mode()).map(|m| m.as_str()))))
        }
        Err(e) if has_code(&e, NONE) => Ok(None),
        Err(e) if is_service_error(&e) => {
            // Some S3-compatible servers (moto 5.2, for one) answer 500 or 501 here; HEAD
            // carries the same retention headers.
            let h = match head {
                Some(h) => h,
                None => head_of(remote)
                    .await
                    .map_err(|e| remote.fail(&v.key, &format!("reading {what}"), &e))?,
            };
            if h.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On) {
                return Ok(Some("legal hold".into()));
            }
            Ok(h.object_lock_retain_until_date()
                .and_then(|d| until_reason(d.secs(), h.object_lock_mode().map(|m| m.as_str()))))
        }
        Err(e) => Err(remote.fail(&v.key, &format!("reading the retention of {what}"), &e)),
    }
}

/// Can versions in this bucket be locked at all? (Saves two requests per version when
/// they cannot. A server that cannot say is taken to allow locks.)
pub(crate) async fn lock_possible(remote: &Remote) -> Result<bool, Error> {
    match remote
        .client
        .get_object_lock_configuration()
        .bucket(&remote.bucket)
        .send()
        .await
    {
        Ok(c) => Ok(c
            .object_lock_configuration()
            .and_then(|c| c.object_lock_enabled())
            == Some(&ObjectLockEnabled::Enabled)),
        Err(e) if has_code(&e, &["ObjectLockConfigurationNotFoundError"]) => Ok(false),
        Err(e) if is_service_error(&e) => Ok(true),
        Err(e) => Err(remote.fail("", "reading the bucket's object lock configuration", &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_under_the_prefix_and_reject_dot_segments() {
        assert_eq!(
            object_key("backups/", "/db/x.sql").unwrap(),
            "backups/db/x.sql"
        );
        assert_eq!(object_key("", "x").unwrap(), "x");
        assert!(object_key("p", "").is_err());
        assert!(object_key("p", "a/../b").is_err());
        assert!(object_key("p", "./b").is_err());
        let one = vec!["dump.sql".to_string()];
        assert_eq!(upload_keys(&one, None).unwrap(), ["dump.sql"]);
        assert_eq!(
            upload_keys(&one, Some("db/today.sql")).unwrap(),
            ["db/today.sql"]
        );
        assert_eq!(upload_keys(&one, Some("db/")).unwrap(), ["db/dump.sql"]);
        let two = vec!["a.tar.zst".to_string(), "sub/a.tar.zst".to_string()];
        assert_eq!(
            upload_keys(&two, Some("nightly")).unwrap(),
            ["nightly/a.tar.zst", "nightly/sub/a.tar.zst"]
        );
        let clash = vec!["a".to_string(), "a".to_string()];
        assert!(upload_keys(&clash, Some("x")).is_err());
    }

    #[test]
    fn sizes_and_part_sizes() {
        use crate::corpus::step::args::parse_size;
        assert_eq!(parse_size("5MiB"), Some(5 << 20));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("8MB"), Some(8_000_000));
        assert_eq!(parse_size("1234"), Some(1234));
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
        assert_eq!(part_size_for(64 << 20, 1 << 30), 64 << 20);
        // 1 TiB at 5 MiB parts would be 209,716 parts: raised to fit 10,000.
        let raised = part_size_for(5 << 20, 1 << 40);
        assert!((1u64 << 40).div_ceil(raised) <= MAX_PARTS, "{raised}");
        let part = |yaml: &str| {
            crate::corpus::step::args::Arguments::parse("upload", &format!("source: a\n{yaml}"))
        };
        assert!(
            part("part_size: 1MiB\n").is_err(),
            "below S3's 5 MiB minimum"
        );
        assert!(part("part_size: 6291456\n").is_ok());
    }

    #[test]
    fn a_file_is_hashed_whole_and_per_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(3 * BUF + 5)).map(|i| (i * 31 % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let part = (BUF + 7) as u64;
        let h = hash_file(&path, part).unwrap();
        assert_eq!(h.len, data.len() as u64);
        assert_eq!(h.whole, <[u8; 32]>::from(Sha256::digest(&data)));
        let want: Vec<[u8; 32]> = data
            .chunks(part as usize)
            .map(|c| Sha256::digest(c).into())
            .collect();
        assert_eq!(h.parts, want);
        // One part: its hash is the whole content's.
        let one = hash_file(&path, u64::MAX).unwrap();
        assert_eq!(one.parts, vec![one.whole]);
        assert_eq!(one.sha256, h.sha256);
    }

    #[test]
    fn part_hashes_split_at_part_boundaries_whatever_the_chunks() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut a = PartHasher::new(4096);
        a.update(&data);
        let (whole_a, parts_a) = a.finish();
        let mut b = PartHasher::new(4096);
        for chunk in data.chunks(777) {
            b.update(chunk);
        }
        let (whole_b, parts_b) = b.finish();
        assert_eq!(whole_a, whole_b);
        assert_eq!(parts_a, parts_b);
        assert_eq!(parts_a.len(), 3);
        let third: [u8; 32] = Sha256::digest(&data[8192..]).into();
        assert_eq!(parts_a[2], third);
        assert_eq!(whole_a, <[u8; 32]>::from(Sha256::digest(&data)));
        let (_, empty) = PartHasher::new(10).finish();
        assert_eq!(empty.len(), 1);
        // Split in two, as uploads hash on two threads: the same hashes.
        let mut parts = PartHasher::parts_only(4096);
        let mut whole = PartHasher::whole_only();
        for chunk in data.chunks(1000) {
            parts.update(chunk);
            whole.update(chunk);
        }
        assert_eq!(parts.finish().1, parts_a);
        assert_eq!(whole.finish(), (whole_a, Vec::new()));
        assert!(composite_checksum(&parts_a).ends_with("-3"));
        assert_eq!(
            checksum_matches(&composite_checksum(&parts_a), &whole_a, Some(&parts_a)),
            Some(true)
        );
        assert_eq!(
            checksum_matches("AAAA-3", &whole_a, Some(&parts_a)),
            Some(false)
        );
        assert_eq!(checksum_matches("AAAA-3", &whole_a, None), None);
        assert_eq!(checksum_matches(&b64(&whole_a), &whole_a, None), Some(true));
    }
}
