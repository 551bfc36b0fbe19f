//! ES256 signature checks (ECDSA over P-256 with SHA-256, RFC 7518 §3.4), done here rather
//! than by `p256` because Wasm has no 64 × 64 → 128-bit multiply: `p256`'s 64-bit limbs
//! emulate one per limb product, and its complete projective formulas cost more than the
//! Jacobian a = −3 ones. On 32-bit limbs (`p256_field`) with per-key tables (`p256_point`),
//! a check in V8 takes a fraction of `p256`'s time.
//!
//! The verdicts are `p256`'s (`VerifyingKey::verify_prehash`), which the tests compare on
//! valid and mutated signatures: r and s in [1, n − 1], both s and n − s accepted (JWS does
//! not ask for low s), e = SHA-256 of the signing input reduced mod n, and the signature is
//! good iff u1·G + u2·Q is not infinity and its x mod n is r.
//!
//! Variable-time: the key, the signature and the signed text are all public.

use sha2::{Digest, Sha256};

use super::p256_field::Fe;
use super::p256_point::{double_mul, Affine, Table, KEY_WIDTH};
use super::p256_uint::{self as uint, U256};

/// The group order n, least significant limb first.
pub const N: U256 = [
    0xfc63_2551,
    0xf3b9_cac2,
    0xa717_9e84,
    0xbce6_faad,
    0xffff_ffff,
    0xffff_ffff,
    0,
    0xffff_ffff,
];
/// `−n⁻¹ mod 2³²`, the Montgomery reduction factor.
const N0_INV: u32 = 0xee00_bc4f;
/// `2⁵¹² mod n`: a Montgomery product with it undoes the other's `2⁻²⁵⁶`.
const RR_N: U256 = [
    0xbe79_eea2,
    0x8324_4c95,
    0x49bd_6fa6,
    0x4699_799c,
    0x2b6b_ec59,
    0x2845_b239,
    0xf3d9_5620,
    0x66e1_2d94,
];

/// A P-256 public key Q, with its table of multiples for the checks.
pub struct P256Key {
    table: Table,
}

impl P256Key {
    /// The key with affine coordinates `x` and `y` (32 big-endian octets each); `None` unless
    /// both are below p and (x, y) is on the curve (which also rules out infinity, which has
    /// no affine coordinates).
    pub fn new(x: &[u8], y: &[u8]) -> Option<P256Key> {
        let x = Fe::from_be_bytes(x.try_into().ok()?)?;
        let y = Fe::from_be_bytes(y.try_into().ok()?)?;
        let q = Affine::new(x, y)?;
        // Build the generator's table now, so no request waits for it.
        Table::generator();
        Some(P256Key {
            table: Table::new(&q, KEY_WIDTH)?,
        })
    }

    /// Whether `signature` (r ‖ s, 32 octets each, as JWS encodes it) is an ES256 signature
    /// of `message` under this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let (r, s) = signature.split_at(32);
        let (Some(r), Some(s)) = (nonzero_scalar(r), nonzero_scalar(s)) else {
            return false;
        };
        let e = uint::from_be_bytes(&Sha256::digest(message).into());
        // e < 2²⁵⁶ < 2n: one subtraction reduces it.
        let e = if uint::less_than(&e, &N) {
            e
        } else {
            uint::sub(&e, &N).0
        };
        let Some(w) = uint::invert_vartime(&s, &N) else {
            return false;
        };
        let u1 = mul_mod_n(&e, &w);
        let u2 = mul_mod_n(&r, &w);
        let point = double_mul(&u1, &u2, &self.table);
        if point.is_infinity() {
            return false;
        }
        // x(point) = X/Z², so x ≡ r' (mod p) iff r'·Z² = X: no inversion. x mod n = r means
        // x = r or, when r + n < p, x = r + n.
        let z2 = point.z.square();
        let matches = |candidate: &U256| {
            Fe::new(*candidate).is_some_and(|candidate| candidate.mul(z2) == point.x)
        };
        if matches(&r) {
            return true;
        }
        let (r_plus_n, carry) = uint::add(&r, &N);
        !carry && matches(&r_plus_n)
    }
}

/// The scalar in 32 big-endian octets if it is in [1, n − 1].
fn nonzero_scalar(bytes: &[u8]) -> Option<U256> {
    let k = uint::from_be_bytes(bytes.try_into().ok()?);
    (!uint::is_zero(&k) && uint::less_than(&k, &N)).then_some(k)
}

/// `a·b mod n` for `a, b < n`: two Montgomery products, the second by 2⁵¹² mod n.
fn mul_mod_n(a: &U256, b: &U256) -> U256 {
    montgomery(&montgomery(a, b), &RR_N)
}

/// `a·b/2²⁵⁶ mod n` for `a, b < n`.
fn montgomery(a: &U256, b: &U256) -> U256 {
    let product = uint::mul_wide(a, b);
    let mut t = [0u32; 17];
    for (t, &p) in t.iter_mut().zip(&product) {
        *t = p;
    }
    // Each row adds m·n, making limb i zero; what carries out of the top limb is kept in the
    // extra limb.
    for i in 0..8 {
        let Some(row) = t.get_mut(i..) else { continue };
        let m = u64::from(row.first().map_or(0, |&low| low.wrapping_mul(N0_INV)));
        let mut carry = 0u64;
        let (head, tail) = row.split_at_mut(8.min(row.len()));
        for (limb, &n) in head.iter_mut().zip(&N) {
            let v = u64::from(*limb) + m * u64::from(n) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        for limb in tail {
            if carry == 0 {
                break;
            }
            let v = u64::from(*limb) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
    }
    let mut out = [0u32; 8];
    for (o, &limb) in out.iter_mut().zip(t.iter().skip(8)) {
        *o = limb;
    }
    // The result is below 2n (t < n·2²⁵⁶ + n·2²⁵⁶): one subtraction brings it below n.
    let overflow = t.last().is_some_and(|&top| top != 0);
    if overflow || !uint::less_than(&out, &N) {
        out = uint::sub(&out, &N).0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
    use p256::elliptic_curve::bigint::{NonZero, U256 as Ref};

    #[test]
    fn montgomery_constants_are_right() {
        assert_eq!(N[0].wrapping_mul(N0_INV), u32::MAX); // n·(−n⁻¹) ≡ −1
        let n = Ref::from_be_slice(&uint::to_be_bytes(&N));
        // 2²⁵⁶ mod n = 2²⁵⁶ − n (n > 2²⁵⁵), squared.
        let r = Ref::ZERO.wrapping_sub(&n);
        let rr = r.mul_mod(&r, &NonZero::new(n).unwrap());
        assert_eq!(rr.to_be_bytes()[..], uint::to_be_bytes(&RR_N)[..]);
    }

    #[test]
    fn products_mod_n_match_crypto_bigint() {
        let n = NonZero::new(Ref::from_be_slice(&uint::to_be_bytes(&N))).unwrap();
        let mut values: Vec<U256> = (0..60)
            .map(|seed| {
                let k = Ref::from_be_slice(&crate::jwt::test_bytes(32, seed)).rem(&n);
                uint::from_be_bytes(&k.to_be_bytes().into())
            })
            .collect();
        values.extend([
            [0; 8],
            [1, 0, 0, 0, 0, 0, 0, 0],
            uint::sub(&N, &[1, 0, 0, 0, 0, 0, 0, 0]).0,
        ]);
        for a in &values {
            for b in &values {
                let expected = Ref::from_be_slice(&uint::to_be_bytes(a))
                    .mul_mod(&Ref::from_be_slice(&uint::to_be_bytes(b)), &n);
                assert_eq!(
                    uint::to_be_bytes(&mul_mod_n(a, b))[..],
                    expected.to_be_bytes()[..]
                );
            }
        }
    }

    /// A p256 signing key from a seed, its verifying key and ours.
    fn keys(seed: u8, round: u64) -> (SigningKey, VerifyingKey, P256Key) {
        let mut rng = crate::jwt::TestRng(seed, round);
        let signing = loop {
            let bytes: [u8; 32] = {
                let mut b = [0u8; 32];
                rsa::rand_core::TryRng::try_fill_bytes(&mut rng, &mut b).unwrap();
                b
            };
            if let Ok(key) = SigningKey::from_bytes(&bytes.into()) {
                break key;
            }
        };
        let verifying = *signing.verifying_key();
        let point = verifying.to_sec1_point(false);
        let ours = P256Key::new(point.x().unwrap(), point.y().unwrap()).unwrap();
        (signing, verifying, ours)
    }

    /// `p256`'s verdict for a JWS ES256 signature (as jwt-simple gets it).
    fn p256_verdict(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::try_from(signature) else {
            return false;
        };
        key.verify_prehash(&Sha256::digest(message), &signature)
            .is_ok()
    }

    fn set_scalar(signature: &mut [u8], which: usize, value: &U256) {
        signature[32 * which..32 * which + 32].copy_from_slice(&uint::to_be_bytes(value));
    }

    fn scalar_of(signature: &[u8], which: usize) -> U256 {
        uint::from_be_bytes(signature[32 * which..32 * which + 32].try_into().unwrap())
    }

    /// Signatures by `p256` over random messages with random keys all verify; each mutated
    /// (bit flips, r ↔ s, s → n − s, r → r + n, 0, n, n − 1, all ones, other lengths, other
    /// message, other key) gets exactly `p256`'s verdict.
    #[test]
    fn verdicts_match_p256_on_valid_and_mutated_signatures() {
        use p256::ecdsa::signature::Signer;
        let one = [1, 0, 0, 0, 0, 0, 0, 0];
        let (mut valid, mut checked) = (0, 0);
        let (_, other_verifying, other_ours) = keys(255, 0);
        for round in 0..600u64 {
            let (signing, verifying, ours) = keys((round % 250) as u8, round);
            let message = crate::jwt::test_bytes((round % 97) as usize, round as u8);
            let signature: Signature = signing.sign(&message);
            let signature = signature.to_bytes().to_vec();
            assert!(ours.verify(&message, &signature), "round {round}");
            valid += 1;
            let r = scalar_of(&signature, 0);
            let s = scalar_of(&signature, 1);
            let mut variants: Vec<Vec<u8>> = Vec::new();
            let bit = (round as usize * 37) % 512;
            let mut flipped = signature.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            variants.push(flipped);
            let mut swapped = signature.clone();
            set_scalar(&mut swapped, 0, &s);
            set_scalar(&mut swapped, 1, &r);
            variants.push(swapped);
            let mut high_s = signature.clone();
            set_scalar(&mut high_s, 1, &uint::sub(&N, &s).0);
            variants.push(high_s);
            let (r_plus_n, carry) = uint::add(&r, &N);
            if !carry {
                let mut wrapped = signature.clone();
                set_scalar(&mut wrapped, 0, &r_plus_n);
                variants.push(wrapped);
            }
            for which in 0..2 {
                for value in [
                    [0; 8],
                    N,
                    uint::sub(&N, &one).0,
                    uint::add(&N, &one).0,
                    [u32::MAX; 8],
                    one,
                ] {
                    let mut changed = signature.clone();
                    set_scalar(&mut changed, which, &value);
                    variants.push(changed);
                }
            }
            variants.push(signature[..63].to_vec());
            variants.push([&signature[..], &[0]].concat());
            variants.push(Vec::new());
            for variant in &variants {
                assert_eq!(
                    ours.verify(&message, variant),
                    p256_verdict(&verifying, &message, variant),
                    "round {round}, {variant:x?}"
                );
                checked += 1;
            }
            let mut other_message = message.clone();
            other_message.push(0);
            assert!(!ours.verify(&other_message, &signature));
            assert!(!p256_verdict(&verifying, &other_message, &signature));
            assert_eq!(
                other_ours.verify(&message, &signature),
                p256_verdict(&other_verifying, &message, &signature)
            );
            checked += 3;
        }
        assert_eq!(valid, 600);
        assert!(checked > 10_000, "{checked}");
    }

    /// High s is accepted, as by p256: n − s is the same signature for the same point's
    /// negation, and JWS does not ask for normalised signatures.
    #[test]
    fn high_s_is_accepted_like_p256_does() {
        use p256::ecdsa::signature::Signer;
        let (signing, verifying, ours) = keys(7, 1);
        let signature: Signature = signing.sign(b"payload");
        let mut bytes = signature.to_bytes().to_vec();
        let s = scalar_of(&bytes, 1);
        set_scalar(&mut bytes, 1, &uint::sub(&N, &s).0);
        assert!(p256_verdict(&verifying, b"payload", &bytes));
        assert!(ours.verify(b"payload", &bytes));
    }

    /// A signature whose point u1·G + u2·Q has x in [n, p) is good with r = x − n, as `p256`
    /// reduces x mod n. Such points are too rare to meet by signing, so the point R comes
    /// first (an x in [n, p) on the curve), then the key: Q = (R − u1·G)/u2 for a chosen
    /// message and s.
    #[test]
    fn x_coordinates_above_n_reduce_like_p256() {
        use p256::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
        use p256::elliptic_curve::PrimeField;
        use p256::{AffinePoint, ProjectivePoint, Scalar};
        let scalar = |k: &U256| Scalar::from_repr(uint::to_be_bytes(k).into()).unwrap();
        let mut found = 0;
        for offset in 0u32..40 {
            let x = uint::add(&N, &[offset, 0, 0, 0, 0, 0, 0, 0]).0;
            let compressed = [&[2u8][..], &uint::to_be_bytes(&x)[..]].concat();
            let Ok(point) = p256::Sec1Point::from_bytes(&compressed) else {
                continue;
            };
            let Some(big_r) = Option::<AffinePoint>::from(AffinePoint::from_sec1_point(&point))
            else {
                continue;
            };
            let r = uint::sub(&x, &N).0;
            if uint::is_zero(&r) {
                continue;
            }
            let message = format!("message {offset}");
            let e = uint::from_be_bytes(&Sha256::digest(message.as_bytes()).into());
            let e = if uint::less_than(&e, &N) {
                e
            } else {
                uint::sub(&e, &N).0
            };
            let s =
                uint::from_be_bytes(&crate::jwt::test_bytes(32, offset as u8).try_into().unwrap());
            let s = if uint::less_than(&s, &N) {
                s
            } else {
                uint::sub(&s, &N).0
            };
            let s_inv = scalar(&s).invert().unwrap();
            let (u1, u2) = (scalar(&e) * s_inv, scalar(&r) * s_inv);
            let q = (ProjectivePoint::from(big_r) - ProjectivePoint::GENERATOR * u1)
                * u2.invert().unwrap();
            let q = q.to_affine();
            let verifying = VerifyingKey::from_affine(q).unwrap();
            let sec1 = q.to_sec1_point(false);
            let ours = P256Key::new(sec1.x().unwrap(), sec1.y().unwrap()).unwrap();
            let mut signature = [0u8; 64];
            set_scalar(&mut signature, 0, &r);
            set_scalar(&mut signature, 1, &s);
            assert!(p256_verdict(&verifying, message.as_bytes(), &signature));
            assert!(
                ours.verify(message.as_bytes(), &signature),
                "offset {offset}"
            );
            // x itself (≥ n) is not a valid r for either.
            set_scalar(&mut signature, 0, &x);
            assert!(!p256_verdict(&verifying, message.as_bytes(), &signature));
            assert!(!ours.verify(message.as_bytes(), &signature));
            found += 1;
        }
        assert!(found >= 5, "{found}");
    }

    #[test]
    fn keys_off_the_curve_or_out_of_range_are_refused() {
        let g = super::super::p256_point::G;
        let (x, y) = (g.x.to_be_bytes(), g.y.to_be_bytes());
        assert!(P256Key::new(&x, &y).is_some());
        assert!(P256Key::new(&x, &x).is_none());
        assert!(P256Key::new(&[0; 32], &[0; 32]).is_none());
        assert!(P256Key::new(&x[1..], &y).is_none());
        assert!(P256Key::new(&x, &[&y[..], &[0]].concat()).is_none());
        // x + p: the same residue, but not below p.
        let x_plus_p = uint::add(&uint::from_be_bytes(&x), &super::super::p256_field::P);
        if !x_plus_p.1 {
            assert!(P256Key::new(&uint::to_be_bytes(&x_plus_p.0), &y).is_none());
        }
        let y_plus_p = uint::add(&uint::from_be_bytes(&y), &super::super::p256_field::P);
        if !y_plus_p.1 {
            assert!(P256Key::new(&x, &uint::to_be_bytes(&y_plus_p.0)).is_none());
        }
        assert!(P256Key::new(&[0xff; 32], &y).is_none());
    }
}
