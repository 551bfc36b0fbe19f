//! Arithmetic modulo the P-256 prime p = 2²⁵⁶ − 2²²⁴ + 2¹⁹² + 2⁹⁶ − 1, for signature checks.
//!
//! A product is the 512-bit schoolbook product on 32-bit limbs (`p256_uint`), then NIST's
//! fast reduction (FIPS 186-4 D.2.3; Solinas): p's special form turns the reduction into
//! additions and subtractions of the product's 32-bit words, no multiplications. Elements are
//! always kept fully reduced (below p), so equality is equality of limbs.
//!
//! Variable-time: only public values (keys, signatures, hashes) ever get here.

use super::p256_uint::{self as uint, U256, U512};

/// p, least significant limb first.
pub const P: U256 = [
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0,
    0,
    0,
    1,
    0xffff_ffff,
];

/// An element of the field, below p.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fe(U256);

impl Fe {
    pub const ZERO: Fe = Fe([0; 8]);
    pub const ONE: Fe = Fe([1, 0, 0, 0, 0, 0, 0, 0]);

    /// The element for `limbs`, which the caller knows to be below p (curve constants).
    pub const fn from_limbs_unchecked(limbs: U256) -> Fe {
        Fe(limbs)
    }

    /// The element for `limbs`; `None` unless it is below p.
    pub fn new(limbs: U256) -> Option<Fe> {
        uint::less_than(&limbs, &P).then_some(Fe(limbs))
    }

    /// The element for 32 big-endian octets; `None` unless the number is below p.
    pub fn from_be_bytes(bytes: &[u8; 32]) -> Option<Fe> {
        Fe::new(uint::from_be_bytes(bytes))
    }

    #[cfg(test)]
    pub fn to_be_bytes(self) -> [u8; 32] {
        uint::to_be_bytes(&self.0)
    }

    pub fn is_zero(self) -> bool {
        uint::is_zero(&self.0)
    }

    pub fn add(self, other: Fe) -> Fe {
        let (sum, carry) = uint::add(&self.0, &other.0);
        if carry || !uint::less_than(&sum, &P) {
            Fe(uint::sub(&sum, &P).0)
        } else {
            Fe(sum)
        }
    }

    pub fn sub(self, other: Fe) -> Fe {
        Fe(uint::sub_mod(&self.0, &other.0, &P))
    }

    pub fn neg(self) -> Fe {
        Fe::ZERO.sub(self)
    }

    pub fn double(self) -> Fe {
        self.add(self)
    }

    pub fn mul(self, other: Fe) -> Fe {
        reduce(&uint::mul_wide(&self.0, &other.0))
    }

    pub fn square(self) -> Fe {
        reduce(&uint::square_wide(&self.0))
    }

    /// `1/self`; `None` for zero.
    pub fn invert(self) -> Option<Fe> {
        uint::invert_vartime(&self.0, &P).map(Fe)
    }
}

/// `c mod p` for a 512-bit `c` (FIPS 186-4 D.2.3): with `c = (c15, …, c0)` in 32-bit words,
/// `c ≡ s1 + 2·s2 + 2·s3 + s4 + s5 − s6 − s7 − s8 − s9`, nine 256-bit numbers made of those
/// words. Each result word is summed on its own in an `i64` (at most ±6·2³²), then the
/// carries run through.
#[inline(always)]
fn reduce(c: &U512) -> Fe {
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15] = c.map(i64::from);
    let words = [
        c0 + c8 + c9 - c11 - c12 - c13 - c14,
        c1 + c9 + c10 - c12 - c13 - c14 - c15,
        c2 + c10 + c11 - c13 - c14 - c15,
        c3 + 2 * (c11 + c12) + c13 - c15 - c8 - c9,
        c4 + 2 * (c12 + c13) + c14 - c9 - c10,
        c5 + 2 * (c13 + c14) + c15 - c10 - c11,
        c6 + c13 + 3 * c14 + 2 * c15 - c8 - c9,
        c7 + c8 + 3 * c15 - c10 - c11 - c12 - c13,
    ];
    let (mut out, mut carry) = propagate(words);
    // What carried out (|carry| ≤ 7 for any 512-bit input) is worth carry·2²⁵⁶ ≡
    // carry·K, K = 2²²⁴ − 2¹⁹² − 2⁹⁶ + 1. As |carry·K| < 2²²⁸, folding it in carries at most
    // ±1 more; folding that in cannot carry again (a +1 left the low part below 2²²⁸, a −1
    // left it above 2²⁵⁶ − 2²²⁸, and K is below 2²²⁴).
    for _ in 0..2 {
        if carry == 0 {
            break;
        }
        let [o0, o1, o2, o3, o4, o5, o6, o7] = out.map(i64::from);
        (out, carry) = propagate([
            o0 + carry,
            o1,
            o2,
            o3 - carry,
            o4,
            o5,
            o6 - carry,
            o7 + carry,
        ]);
    }
    // Now below 2²⁵⁶ < 2p.
    if !uint::less_than(&out, &P) {
        out = uint::sub(&out, &P).0;
    }
    Fe(out)
}

/// Runs the carries through signed word sums: the low 256 bits, and what carried out of them
/// (signed: the arithmetic shift floors).
#[inline(always)]
fn propagate(words: [i64; 8]) -> (U256, i64) {
    let mut out = [0u32; 8];
    let mut carry = 0i64;
    for (o, word) in out.iter_mut().zip(words) {
        let v = word + carry;
        *o = v as u32;
        carry = v >> 32;
    }
    (out, carry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::bigint::{NonZero, U256 as Ref, U512 as RefWide};

    fn reference(a: &U256) -> Ref {
        Ref::from_be_slice(&uint::to_be_bytes(a))
    }

    fn modulus() -> NonZero<Ref> {
        NonZero::new(reference(&P)).unwrap()
    }

    /// `a·b mod p` by crypto-bigint.
    fn reference_mul(a: &Fe, b: &Fe) -> Fe {
        let wide: RefWide = reference(&a.0).concatenating_mul(&reference(&b.0));
        let reduced = wide.rem(&NonZero::new(RefWide::from(&reference(&P))).unwrap());
        let bytes = reduced.to_be_bytes();
        Fe::from_be_bytes(&bytes[32..].try_into().unwrap()).unwrap()
    }

    /// Elements at the edges (0, 1, p − 1, near 2³², near 2²⁵⁶ − p) and random ones.
    fn elements() -> Vec<Fe> {
        let p_minus = |k: u32| Fe(uint::sub(&P, &[k, 0, 0, 0, 0, 0, 0, 0]).0);
        let mut out = vec![
            Fe::ZERO,
            Fe::ONE,
            Fe([2, 0, 0, 0, 0, 0, 0, 0]),
            p_minus(1),
            p_minus(2),
            Fe([u32::MAX, 0, 0, 0, 0, 0, 0, 0]),
            Fe([0, 0, 0, 0, 0, 0, 0, u32::MAX - 1]),
            // 2²⁵⁶ − p − 1 and 2²⁵⁶ − p: squares and products near 2⁵¹² − 2²⁵⁷·p.
            Fe(uint::sub(&[0; 8], &P).0),
            Fe(uint::sub(&uint::sub(&[0; 8], &P).0, &[1, 0, 0, 0, 0, 0, 0, 0]).0),
            Fe([0, 0, 0, u32::MAX, u32::MAX, u32::MAX, 0, 0]),
            Fe([u32::MAX, u32::MAX, u32::MAX, 0, 0, 0, 0, 0]),
        ];
        for seed in 0..150 {
            let bytes: [u8; 32] = crate::jwt::test_bytes(32, seed).try_into().unwrap();
            let limbs = uint::from_be_bytes(&bytes);
            out.push(Fe(if uint::less_than(&limbs, &P) {
                limbs
            } else {
                uint::sub(&limbs, &P).0
            }));
        }
        out
    }

    #[test]
    fn arithmetic_matches_crypto_bigint() {
        let elements = elements();
        let m = modulus();
        for a in &elements {
            assert_eq!(a.square(), reference_mul(a, a), "{a:?}²");
            for b in &elements {
                assert_eq!(a.mul(*b), reference_mul(a, b), "{a:?}·{b:?}");
                let sum = reference(&a.0).add_mod(&reference(&b.0), &m);
                assert_eq!(a.add(*b).0, uint::from_be_bytes(&sum.to_be_bytes().into()));
                let diff = reference(&a.0).sub_mod(&reference(&b.0), &m);
                assert_eq!(a.sub(*b).0, uint::from_be_bytes(&diff.to_be_bytes().into()));
            }
            assert_eq!(a.neg().add(*a), Fe::ZERO);
            match a.invert() {
                Some(inverse) => assert_eq!(inverse.mul(*a), Fe::ONE),
                None => assert!(a.is_zero()),
            }
        }
    }

    /// The reduction sees every 512-bit number a product of two elements can be, so it is also
    /// checked on inputs chosen to make each word sum extreme: all-ones, and words that are all
    /// ones where a sum adds and zero where it subtracts (and the reverse).
    #[test]
    fn reduction_handles_extreme_word_sums() {
        let wide_mod = NonZero::new(RefWide::from(&reference(&P))).unwrap();
        let max_product = {
            let top = uint::sub(&P, &[1, 0, 0, 0, 0, 0, 0, 0]).0;
            uint::mul_wide(&top, &top)
        };
        let mut inputs = vec![[0u32; 16], max_product];
        for pattern in 0u32..64 {
            // Words 8..15 (the ones the sums combine) from the pattern's bits; low words varied.
            let mut c = [0u32; 16];
            for (i, word) in c.iter_mut().enumerate() {
                *word = if i < 8 {
                    if pattern & 1 == 0 {
                        0
                    } else {
                        u32::MAX
                    }
                } else if (pattern >> (i % 6)) & 1 == 1 {
                    u32::MAX
                } else {
                    0
                };
            }
            inputs.push(c);
        }
        for c in inputs {
            let mut bytes = [0u8; 64];
            for (chunk, limb) in bytes.rchunks_exact_mut(4).zip(&c) {
                chunk.copy_from_slice(&limb.to_be_bytes());
            }
            let expected = RefWide::from_be_slice(&bytes).rem(&wide_mod).to_be_bytes();
            assert_eq!(
                reduce(&c).to_be_bytes()[..],
                expected[32..],
                "reduce({c:x?})"
            );
        }
    }

    #[test]
    fn only_numbers_below_p_are_elements() {
        assert!(Fe::new(P).is_none());
        assert!(Fe::new([u32::MAX; 8]).is_none());
        let p_plus_one = uint::add(&P, &[1, 0, 0, 0, 0, 0, 0, 0]).0;
        assert!(Fe::new(p_plus_one).is_none());
        let below = uint::sub(&P, &[1, 0, 0, 0, 0, 0, 0, 0]).0;
        assert_eq!(Fe::new(below), Some(Fe(below)));
        assert_eq!(Fe::from_be_bytes(&Fe(below).to_be_bytes()), Some(Fe(below)));
    }
}
