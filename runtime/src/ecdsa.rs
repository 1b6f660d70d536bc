//! ECDSA P-256 signature verification: the request record, key and signature encodings, and the
//! exact software verdict that the BPU's engine is held to.
//!
//! Purpose: a caller turns a public key (PEM, SPKI DER or SEC1), a signature (DER or 64-byte
//! r‖s) and a SHA-256 digest into a [`VerifyRequest`], and asks the crypto service for a verdict.
//!
//! Invariants:
//! - A [`VerifyRequest`] carries raw big-endian values, unvalidated: r = 0, r ≥ n, a point off
//!   the curve or a coordinate ≥ p are all representable, because the device must see and
//!   reject them itself. Its memory layout (160 bytes: digest, r, s, Qx, Qy) is the device's
//!   verification record.
//! - [`cpu_verify`] is the reference verdict: false unless 1 ≤ r, s ≤ n−1, Q is a point of P-256
//!   (both coordinates < p, on the curve; the identity has no affine form, and (0, 0) is not on
//!   the curve), and the signature verifies for the digest read as a 256-bit big-endian integer.
//! - Parsing is strict: a signature that is not DER by the letter fails to parse, and callers
//!   treat that as an invalid signature.

use aws_lc_rs::digest as lc_digest;
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use der::asn1::UintRef;
use der::{Decode, Encode};
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use sha2::{Digest as _, Sha256};
use spki::ObjectIdentifier;

/// The field prime p of P-256, big-endian.
pub const P: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
];

/// The group order n of P-256, big-endian.
pub const N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// id-ecPublicKey (RFC 5480).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1 / P-256 (RFC 5480).
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Bytes of one [`VerifyRequest`] record.
pub const RECORD_BYTES: usize = 160;

/// One ECDSA P-256 verification: SHA-256 digest, signature (r, s) and public key (Qx, Qy), all
/// 32-byte big-endian and not validated. The layout is the device's verification record.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct VerifyRequest {
    pub digest: [u8; 32],
    pub r: [u8; 32],
    pub s: [u8; 32],
    pub qx: [u8; 32],
    pub qy: [u8; 32],
}

const _: () = assert!(std::mem::size_of::<VerifyRequest>() == RECORD_BYTES);

impl VerifyRequest {
    /// A request to verify `sig` by `key` over a digest computed elsewhere.
    pub fn new(key: &PublicKey, sig: &Signature, digest: [u8; 32]) -> VerifyRequest {
        VerifyRequest {
            digest,
            r: sig.r,
            s: sig.s,
            qx: key.x,
            qy: key.y,
        }
    }

    /// A request to verify `sig` by `key` over `message`, hashed here with SHA-256.
    pub fn for_message(key: &PublicKey, sig: &Signature, message: &[u8]) -> VerifyRequest {
        VerifyRequest::new(key, sig, Sha256::digest(message).into())
    }

    /// The 160-byte device record: digest, r, s, Qx, Qy.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }
}

impl std::fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = |b: &[u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        f.debug_struct("VerifyRequest")
            .field("digest", &h(&self.digest))
            .field("r", &h(&self.r))
            .field("s", &h(&self.s))
            .field("qx", &h(&self.qx))
            .field("qy", &h(&self.qy))
            .finish()
    }
}

/// Why a key or signature could not be read. Each message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a PEM public key ({0}); expected a `-----BEGIN PUBLIC KEY-----` block as `openssl ec -in KEY -pubout` writes")]
    Pem(String),
    #[error("the PEM block is `{0}`, not `PUBLIC KEY`; give the public key (`openssl ec -in KEY -pubout -out PUB.pem`)")]
    PemLabel(String),
    #[error(
        "not a DER SubjectPublicKeyInfo ({0}); give a PEM or DER public key, or a raw SEC1 point"
    )]
    Spki(String),
    #[error("the key's algorithm is {0}, not id-ecPublicKey (1.2.840.10045.2.1); only ECDSA P-256 keys are supported")]
    WrongAlgorithm(String),
    #[error("the key's curve is {0}, not prime256v1/P-256 (1.2.840.10045.3.1.7); make the key with `openssl ecparam -name prime256v1 -genkey`")]
    WrongCurve(String),
    #[error("SEC1 point of {len} bytes starting 0x{tag:02x}: expected 65 bytes starting 0x04 (uncompressed) or 33 bytes starting 0x02/0x03 (compressed)")]
    Sec1 { tag: u8, len: usize },
    #[error(
        "compressed point: x is not the x-coordinate of a P-256 point ({0}); the key is corrupt"
    )]
    Decompress(&'static str),
    #[error("signature is not a strict DER ECDSA-Sig-Value, SEQUENCE {{ r INTEGER, s INTEGER }} ({0}); for a raw 64-byte r‖s signature use the fixed format")]
    SignatureDer(String),
    #[error("signature {which} is {len} bytes long; P-256 values are at most 32 bytes")]
    SignatureInteger { which: &'static str, len: usize },
    #[error(
        "fixed-format signature of {0} bytes: expected 64 bytes, r‖s, each 32-byte big-endian"
    )]
    SignatureLength(usize),
    #[error("private key: {0}; make one with `bpu keygen` or `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`")]
    PrivateKey(String),
}

/// A P-256 public key as raw affine coordinates (x, y), 32-byte big-endian each. An uncompressed
/// encoding is taken as it is, even off the curve: [`cpu_verify`] (or the device) rejects it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey {
    pub x: [u8; 32],
    pub y: [u8; 32],
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(04")?;
        for b in self.x.iter().chain(&self.y) {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl PublicKey {
    /// A SEC1 point: 0x04‖x‖y (taken raw) or 0x02/0x03‖x (decompressed; an error if x ≥ p or no
    /// y exists).
    pub fn from_sec1(bytes: &[u8]) -> Result<PublicKey, ParseError> {
        match bytes {
            [0x04, rest @ ..] if rest.len() == 64 => {
                let mut x = [0u8; 32];
                let mut y = [0u8; 32];
                x.copy_from_slice(&rest[..32]);
                y.copy_from_slice(&rest[32..]);
                Ok(PublicKey { x, y })
            }
            [0x02 | 0x03, rest @ ..] if rest.len() == 32 => {
                if rest >= &P[..] {
                    return Err(ParseError::Decompress("x ≥ p"));
                }
                let point = p256::EncodedPoint::from_bytes(bytes)
                    .map_err(|_| ParseError::Decompress("not a SEC1 point"))?;
                let affine: Option<p256::AffinePoint> =
                    p256::AffinePoint::from_encoded_point(&point).into();
                let affine =
                    affine.ok_or(ParseError::Decompress("x³ − 3x + b has no square root"))?;
                let full = affine.to_encoded_point(false);
                PublicKey::from_sec1(full.as_bytes())
            }
            _ => Err(ParseError::Sec1 {
                tag: bytes.first().copied().unwrap_or(0),
                len: bytes.len(),
            }),
        }
    }

    /// A DER SubjectPublicKeyInfo whose algorithm is id-ecPublicKey with the prime256v1 curve.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, ParseError> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| ParseError::Spki(e.to_string()))?;
        let (alg, params) = spki
            .algorithm
            .oids()
            .map_err(|e| ParseError::Spki(format!("algorithm parameters: {e}")))?;
        if alg != ID_EC_PUBLIC_KEY {
            return Err(ParseError::WrongAlgorithm(alg.to_string()));
        }
        match params {
            Some(curve) if curve == PRIME256V1 => {}
            Some(curve) => return Err(ParseError::WrongCurve(curve.to_string())),
            None => return Err(ParseError::WrongCurve("absent".into())),
        }
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| ParseError::Spki("the key BIT STRING has unused bits".into()))?;
        PublicKey::from_sec1(point)
    }

    /// A PEM `PUBLIC KEY` block (SubjectPublicKeyInfo), as `openssl ec -pubout` writes.
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, ParseError> {
        let text = trim_ascii(pem);
        let (label, der) =
            pem_rfc7468::decode_vec(text).map_err(|e| ParseError::Pem(e.to_string()))?;
        if label != "PUBLIC KEY" {
            return Err(ParseError::PemLabel(label.to_string()));
        }
        PublicKey::from_spki_der(&der)
    }

    /// Any of the encodings above, recognised by their first bytes: `-----BEGIN` is PEM, 0x30
    /// (SEQUENCE) is SPKI DER, anything else is a SEC1 point.
    pub fn parse(bytes: &[u8]) -> Result<PublicKey, ParseError> {
        let t = trim_ascii(bytes);
        if t.starts_with(b"-----BEGIN") {
            PublicKey::from_pem(t)
        } else if bytes.first() == Some(&0x30) {
            PublicKey::from_spki_der(bytes)
        } else {
            PublicKey::from_sec1(bytes)
        }
    }

    /// The uncompressed SEC1 encoding 0x04‖x‖y.
    pub fn to_sec1(&self) -> [u8; 65] {
        let mut o = [0u8; 65];
        o[0] = 0x04;
        o[1..33].copy_from_slice(&self.x);
        o[33..].copy_from_slice(&self.y);
        o
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (RFC 5480, X9.62).
#[derive(der::Sequence)]
struct SigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// An ECDSA P-256 signature as raw (r, s), 32-byte big-endian each; neither is range-checked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Signature {
    pub r: [u8; 32],
    pub s: [u8; 32],
}

impl Signature {
    /// Strict DER: definite minimal lengths, minimal non-negative INTEGERs, nothing after the
    /// SEQUENCE, and r, s at most 32 bytes once a leading 0x00 is removed.
    pub fn from_der(der: &[u8]) -> Result<Signature, ParseError> {
        let v = SigValue::from_der(der).map_err(|e| ParseError::SignatureDer(e.to_string()))?;
        Ok(Signature {
            r: pad32("r", v.r.as_bytes())?,
            s: pad32("s", v.s.as_bytes())?,
        })
    }

    /// 64 bytes, r‖s (IEEE P1363 / JOSE / WebCrypto form).
    pub fn from_fixed(bytes: &[u8]) -> Result<Signature, ParseError> {
        if bytes.len() != 64 {
            return Err(ParseError::SignatureLength(bytes.len()));
        }
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..]);
        Ok(Signature { r, s })
    }

    /// The DER ECDSA-Sig-Value (minimal integers, at most 72 bytes).
    pub fn to_der(&self) -> Vec<u8> {
        // Two integers of at most 33 content bytes each always encode; `UintRef::new` only fails
        // past DER's length limit.
        let v = SigValue {
            r: UintRef::new(&self.r).expect("32-byte integer"),
            s: UintRef::new(&self.s).expect("32-byte integer"),
        };
        v.to_der().expect("a 72-byte SEQUENCE encodes")
    }

    /// r‖s, 64 bytes.
    pub fn to_fixed(&self) -> [u8; 64] {
        let mut o = [0u8; 64];
        o[..32].copy_from_slice(&self.r);
        o[32..].copy_from_slice(&self.s);
        o
    }
}

/// A DER integer's magnitude (leading zeros removed) left-padded to 32 bytes.
fn pad32(which: &'static str, b: &[u8]) -> Result<[u8; 32], ParseError> {
    let b = match b.iter().position(|&x| x != 0) {
        Some(i) => &b[i..],
        None => &[],
    };
    if b.len() > 32 {
        return Err(ParseError::SignatureInteger {
            which,
            len: b.len(),
        });
    }
    let mut o = [0u8; 32];
    o[32 - b.len()..].copy_from_slice(b);
    Ok(o)
}

/// 1 ≤ v ≤ n − 1 (big-endian byte arrays compare as integers).
fn is_scalar(v: &[u8; 32]) -> bool {
    *v != [0u8; 32] && *v < N
}

/// The reference ECDSA P-256 verdict (see the module invariants): range checks here, the point
/// check and the verification itself by AWS-LC (`aws-lc-rs`), on the digest as given.
pub fn cpu_verify(req: &VerifyRequest) -> bool {
    if !is_scalar(&req.r) || !is_scalar(&req.s) || req.qx >= P || req.qy >= P {
        return false;
    }
    let sec1 = PublicKey {
        x: req.qx,
        y: req.qy,
    }
    .to_sec1();
    // Parsing checks that Q is on the curve.
    let Ok(key) = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &sec1).parse() else {
        return false;
    };
    let Ok(digest) = lc_digest::Digest::import_less_safe(&req.digest, &lc_digest::SHA256) else {
        return false;
    };
    let sig = Signature { r: req.r, s: req.s }.to_fixed();
    key.verify_digest_sig(&digest, &sig).is_ok()
}

/// A P-256 private key that signs SHA-256 digests (members' and nodes' keys), by AWS-LC.
pub struct SigningKey {
    pair: aws_lc_rs::signature::EcdsaKeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?})", self.public_key())
    }
}

/// PEM label of PKCS#8 private keys.
const PKCS8_LABEL: &str = "PRIVATE KEY";
/// PEM label of SEC1 (RFC 5915) private keys, as `openssl ecparam -genkey` writes them.
const SEC1_LABEL: &str = "EC PRIVATE KEY";

impl SigningKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<SigningKey, ParseError> {
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .map_err(|_| ParseError::PrivateKey("key generation failed".into()))?;
        Ok(SigningKey { pair })
    }

    /// A key from PKCS#8 or SEC1 (RFC 5915) DER.
    pub fn from_der(der: &[u8]) -> Result<SigningKey, ParseError> {
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der,
        )
        .map_err(|e| ParseError::PrivateKey(format!("not a P-256 private key ({e})")))?;
        Ok(SigningKey { pair })
    }

    /// A key from PEM (`PRIVATE KEY` or `EC PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, ParseError> {
        let (label, der) = pem_rfc7468::decode_vec(pem)
            .map_err(|e| ParseError::PrivateKey(format!("not PEM ({e})")))?;
        if label != PKCS8_LABEL && label != SEC1_LABEL {
            return Err(ParseError::PrivateKey(format!(
                "PEM label {label:?}, expected {PKCS8_LABEL:?} or {SEC1_LABEL:?}"
            )));
        }
        SigningKey::from_der(&der)
    }

    /// PKCS#8 v1 PEM (what `bpu keygen` writes; `openssl pkey` reads it).
    pub fn to_pem(&self) -> Result<String, ParseError> {
        use aws_lc_rs::encoding::AsDer;
        let der = self
            .pair
            .private_key()
            .as_der()
            .map_err(|_| ParseError::PrivateKey("cannot encode the key".into()))?;
        pem_rfc7468::encode_string(PKCS8_LABEL, pem_rfc7468::LineEnding::LF, der.as_ref())
            .map_err(|e| ParseError::PrivateKey(format!("cannot encode PEM ({e})")))
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        use aws_lc_rs::signature::KeyPair;
        // An EcdsaKeyPair's public key is always a valid uncompressed P-256 point.
        PublicKey::from_sec1(self.pair.public_key().as_ref()).unwrap_or(PublicKey {
            x: [0; 32],
            y: [0; 32],
        })
    }

    /// Signs a SHA-256 digest (randomized nonce; verifies with [`VerifyRequest::new`]).
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Result<Signature, ParseError> {
        let d = lc_digest::Digest::import_less_safe(digest, &lc_digest::SHA256)
            .map_err(|_| ParseError::PrivateKey("bad digest".into()))?;
        let sig = self
            .pair
            .sign_digest(&d)
            .map_err(|_| ParseError::PrivateKey("signing failed".into()))?;
        Signature::from_fixed(sig.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::Curve;

    #[test]
    fn signing_key_round_trips_and_signs() {
        let k = SigningKey::generate().expect("keygen");
        let pem = k.to_pem().expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let k2 = SigningKey::from_pem(pem.as_bytes()).expect("parse");
        assert_eq!(k.public_key(), k2.public_key());
        let digest = [7u8; 32];
        let sig = k2.sign_digest(&digest).expect("sign");
        assert!(cpu_verify(&VerifyRequest::new(
            &k.public_key(),
            &sig,
            digest
        )));
        let mut other = digest;
        other[0] ^= 1;
        assert!(!cpu_verify(&VerifyRequest::new(
            &k.public_key(),
            &sig,
            other
        )));
        assert!(SigningKey::from_pem(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
        )
        .is_err());
    }

    #[test]
    fn curve_constants_match_p256() {
        use p256::elliptic_curve::bigint::{ArrayEncoding, U256};
        assert_eq!(N, p256::NistP256::ORDER.to_be_byte_array().as_slice());
        // p = 2^256 − 2^224 + 2^192 + 2^96 − 1 (FIPS 186-4, D.1.2.3).
        let bit = |k: usize| U256::ONE.shl_vartime(k);
        let p = U256::ZERO
            .wrapping_sub(&bit(224))
            .wrapping_add(&bit(192))
            .wrapping_add(&bit(96))
            .wrapping_sub(&U256::ONE);
        assert_eq!(P, p.to_be_byte_array().as_slice());
    }

    #[test]
    fn record_layout_is_digest_r_s_qx_qy() {
        let req = VerifyRequest {
            digest: [1; 32],
            r: [2; 32],
            s: [3; 32],
            qx: [4; 32],
            qy: [5; 32],
        };
        let b = req.as_bytes();
        assert_eq!(b.len(), RECORD_BYTES);
        for (i, chunk) in b.chunks(32).enumerate() {
            assert!(chunk.iter().all(|&x| usize::from(x) == i + 1), "field {i}");
        }
    }

    #[test]
    fn scalar_range_edges() {
        let mut n_minus_1 = N;
        n_minus_1[31] -= 1;
        assert!(is_scalar(&n_minus_1));
        assert!(!is_scalar(&N));
        assert!(!is_scalar(&[0; 32]));
        let mut one = [0u8; 32];
        one[31] = 1;
        assert!(is_scalar(&one));
        assert!(!is_scalar(&[0xff; 32]));
    }
}
