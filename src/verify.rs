//! `bpu verify`: check an ECDSA P-256 signature over a file, as `openssl dgst -sha256 -verify`.

use anyhow::{bail, Context, Result};
use bpu_runtime::{CryptoService, PublicKey, Signature, VerifyRequest};
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

/// How the signature file is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SigFormat {
    /// DER ECDSA-Sig-Value, as `openssl dgst -sign` writes (strict DER only).
    Der,
    /// 64 bytes: r then s, 32-byte big-endian each (IEEE P1363, JOSE, WebCrypto).
    Fixed,
}

/// What `bpu verify --json` prints.
#[derive(serde::Serialize)]
struct Outcome<'a> {
    file: &'a str,
    device: String,
    digest: String,
    valid: bool,
}

/// Arguments of `bpu verify`.
pub struct Args<'a> {
    pub pubkey: &'a Path,
    pub signature: &'a Path,
    pub sig_format: SigFormat,
    pub file: &'a str,
    pub device: &'a str,
    pub json: bool,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// Exit status 0 when the signature verifies, 1 when it does not; errors (unreadable or
/// malformed inputs, device failures) are returned and end as status 2.
pub fn run(a: &Args<'_>, rt: &tokio::runtime::Runtime) -> Result<ExitCode> {
    if a.pubkey == Path::new("-") || a.signature == Path::new("-") {
        bail!(
            "only the signed file can come from stdin (`-`); give the key and signature as files"
        );
    }
    let key = PublicKey::parse(&read(a.pubkey, "public key")?).with_context(|| {
        format!(
            "reading the public key {} (PEM, DER SubjectPublicKeyInfo or raw SEC1 point)",
            a.pubkey.display()
        )
    })?;
    let sig_bytes = read(a.signature, "signature")?;
    let sig = match a.sig_format {
        SigFormat::Der => Signature::from_der(&sig_bytes),
        SigFormat::Fixed => Signature::from_fixed(&sig_bytes),
    }
    .with_context(|| {
        let format = match a.sig_format {
            SigFormat::Der => "DER",
            SigFormat::Fixed => "64-byte r‖s",
        };
        format!(
            "reading the signature {} as {format} (see --sig-format)",
            a.signature.display()
        )
    })?;
    let data = if a.file == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .context("reading the signed data from stdin")?;
        v
    } else {
        read(Path::new(a.file), "signed file")?
    };
    let svc = CryptoService::open(a.device).with_context(|| format!("opening {}", a.device))?;
    let (digest, valid) = rt
        .block_on(async {
            let digest = svc.sha256(&data).await?;
            let req = VerifyRequest::new(&key, &sig, digest.0);
            Ok::<_, bpu_runtime::Error>((digest, svc.verify(&req).await?))
        })
        .map_err(|e| {
            let hint = match e {
                bpu_runtime::Error::Unsupported(_) => {
                    format!(
                        "{} cannot verify signatures yet; give --device cpu",
                        a.device
                    )
                }
                _ => format!("verifying on {}", a.device),
            };
            anyhow::Error::new(e).context(hint)
        })?;
    if a.json {
        let o = Outcome {
            file: a.file,
            device: svc.backend_name(),
            digest: digest.to_string(),
            valid,
        };
        println!("{}", serde_json::to_string_pretty(&o)?);
    } else if valid {
        println!("Verified OK");
    } else {
        println!("Verification failure");
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
