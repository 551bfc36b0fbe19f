//! RSA's public operation, `s^e mod n`, for signature checks (RFC 8017 §5.2.2, RSAVP1).
//!
//! Montgomery arithmetic on 32-bit limbs: Wasm multiplies 32 × 32 → 64 bits in one
//! instruction, where the 64-bit limbs of general bignum crates need an emulated 128-bit
//! product. Measured in V8, a 2048-bit check here is about 3× faster than `rsa` 0.10.
//!
//! Every input is public (the key, the signature, the signed text), so the code may take
//! time that depends on the values: it is not for private keys. The only state is the key's
//! Montgomery constants, worked out once when the key is loaded.

/// A vetted RSA public key, ready for the public operation.
pub struct RsaPublic {
    /// The modulus, least significant limb first.
    n: Vec<u32>,
    /// `-n⁻¹ mod 2³²`, the Montgomery reduction factor.
    n0_inv: u32,
    /// `R² mod n` with `R = 2^(32·limbs)`: takes a number into Montgomery form.
    r_squared: Vec<u32>,
    e: u64,
    /// The modulus length in octets (`k` in RFC 8017).
    size: usize,
    /// The modulus length in bits.
    bits: usize,
}

impl RsaPublic {
    /// Modulus sizes accepted, in bits: below 2048 is too weak (RFC 7518 §3.3), and above
    /// 4096 each check gets costly enough to be a denial of service.
    pub const BITS: std::ops::RangeInclusive<usize> = 2048..=4096;
    /// Exponents accepted: odd, from 3 to 2³³ − 1 (a larger one is only a way to slow
    /// checks down; keys use 65537).
    const MAX_EXPONENT: u64 = (1 << 33) - 1;

    /// The key with modulus `n` and exponent `e` (big-endian octets, leading zeros allowed);
    /// `None` unless the modulus is odd and of an accepted size and the exponent is valid.
    pub fn new(n: &[u8], e: &[u8]) -> Option<RsaPublic> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_length(n);
        if !Self::BITS.contains(&bits) || n.last().is_none_or(|low| low & 1 == 0) || e.len() > 8 {
            return None;
        }
        let e = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if e < 3 || e & 1 == 0 || e > Self::MAX_EXPONENT {
            return None;
        }
        let n = limbs_from_be(n, n.len().div_ceil(4));
        let n0_inv = neg_inverse(*n.first()?);
        let r_squared = r_squared_mod(&n);
        Some(RsaPublic {
            n0_inv,
            r_squared,
            e,
            size: bits.div_ceil(8),
            bits,
            n,
        })
    }

    /// The modulus length in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// `signature^e mod n` as `size()` octets; `None` if the signature is not `size()` octets
    /// or, as a number, not below the modulus (RFC 8017 §8.2.2 steps 1 and 2).
    pub fn apply(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.size {
            return None;
        }
        let limbs = self.n.len();
        let s = limbs_from_be(signature, limbs);
        if !less_than(&s, &self.n) {
            return None;
        }
        let mut scratch = vec![0u32; 2 * limbs + 1];
        let mut base = vec![0u32; limbs];
        product(&s, &self.r_squared, &mut scratch);
        self.reduce(&mut scratch, &mut base);
        let mut acc = base.clone();
        // Left to right over the exponent's bits, after its top one.
        let top_bit = 63 - self.e.leading_zeros();
        for bit in (0..top_bit).rev() {
            square(&acc, &mut scratch);
            self.reduce(&mut scratch, &mut acc);
            if self.e >> bit & 1 == 1 {
                product(&acc, &base, &mut scratch);
                self.reduce(&mut scratch, &mut acc);
            }
        }
        // Out of Montgomery form: reduce the number itself once more.
        scratch.fill(0);
        for (t, &a) in scratch.iter_mut().zip(&acc) {
            *t = a;
        }
        self.reduce(&mut scratch, &mut acc);
        Some(limbs_to_be(&acc, self.size))
    }

    /// Montgomery reduction of the `2·limbs` number in `t` (its extra limb is scratch):
    /// `out = t/R mod n`, for `t < n·R`.
    fn reduce(&self, t: &mut [u32], out: &mut [u32]) {
        let limbs = self.n.len();
        // What carries out of the top limb of `t` (at most 1 once shifted down).
        let mut overflow = 0u64;
        for i in 0..limbs {
            let Some((next, row)) = t.get_mut(i..=i + limbs).and_then(|w| w.split_last_mut())
            else {
                continue;
            };
            // Adding m·n makes the row's low limb zero.
            let m = row.first().map_or(0, |&low| low.wrapping_mul(self.n0_inv));
            let carry = multiply_add_row(row, &self.n, m);
            let sum = u64::from(*next) + carry + overflow;
            *next = sum as u32;
            overflow = sum >> 32;
        }
        for (o, &t) in out.iter_mut().zip(t.iter().skip(limbs)) {
            *o = t;
        }
        // The result is below 2n: one subtraction brings it below n.
        if overflow != 0 || !less_than(out, &self.n) {
            subtract_in_place(out, &self.n);
        }
    }
}

/// `row += m·b` over `b.len()` limbs; returns the carry out of the last.
#[inline(always)]
fn multiply_add_row(row: &mut [u32], b: &[u32], m: u32) -> u64 {
    let m = u64::from(m);
    let mut carry = 0u64;
    for (t, &b) in row.iter_mut().zip(b) {
        // At most (2³²−1) + (2³²−1)² + (2³²−1) = 2⁶⁴ − 1: no overflow.
        let sum = u64::from(*t) + m * u64::from(b) + carry;
        *t = sum as u32;
        carry = sum >> 32;
    }
    carry
}

/// `t = a·b` (schoolbook); `t` has at least `a.len() + b.len()` limbs.
fn product(a: &[u32], b: &[u32], t: &mut [u32]) {
    t.fill(0);
    for (i, &a) in a.iter().enumerate() {
        if let Some((top, row)) = t.get_mut(i..=i + b.len()).and_then(|w| w.split_last_mut()) {
            *top = multiply_add_row(row, b, a) as u32;
        }
    }
}

/// `t = a²`: each cross product once, doubled, plus the squares on the diagonal (about
/// half the multiplications of `product`). `t` has at least `2·a.len()` limbs.
fn square(a: &[u32], t: &mut [u32]) {
    let limbs = a.len();
    t.fill(0);
    for (i, &ai) in a.iter().enumerate() {
        let rest = a.get(i + 1..).unwrap_or_default();
        if let Some((top, row)) = t
            .get_mut(2 * i + 1..=i + limbs)
            .and_then(|w| w.split_last_mut())
        {
            *top = multiply_add_row(row, rest, ai) as u32;
        }
    }
    super::limbs::double_and_add_squares(t, a);
}

/// `-n⁻¹ mod 2³²` for odd `n0` (Newton's iteration doubles the correct bits each step).
fn neg_inverse(n0: u32) -> u32 {
    let mut inverse: u32 = 1;
    for _ in 0..5 {
        inverse = inverse.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inverse)));
    }
    inverse.wrapping_neg()
}

/// `2^(64·limbs) mod n`, by doubling 1 that many times (once per key, about 4k doublings).
fn r_squared_mod(n: &[u32]) -> Vec<u32> {
    let mut x = vec![0u32; n.len()];
    if let Some(low) = x.first_mut() {
        *low = 1;
    }
    for _ in 0..64 * n.len() {
        let mut shifted_out = 0u32;
        for limb in x.iter_mut() {
            let top = *limb >> 31;
            *limb = (*limb << 1) | shifted_out;
            shifted_out = top;
        }
        if shifted_out == 1 || !less_than(&x, n) {
            subtract_in_place(&mut x, n);
        }
    }
    x
}

/// `a < b` for numbers of the same length, least significant limb first.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` modulo `2^(32·len)`.
fn subtract_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u32;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d, b1) = x.overflowing_sub(y);
        let (d, b2) = d.overflowing_sub(borrow);
        *x = d;
        borrow = u32::from(b1 | b2);
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.get(zeros..).unwrap_or_default()
}

fn bit_length(be: &[u8]) -> usize {
    be.first()
        .map_or(0, |&top| 8 * be.len() - top.leading_zeros() as usize)
}

/// Big-endian octets as `limbs` limbs, least significant first (octets beyond are dropped;
/// callers pass at most `4·limbs`).
fn limbs_from_be(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out: Vec<u32> = bytes
        .rchunks(4)
        .map(|chunk| chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
        .collect();
    out.resize(limbs, 0);
    out
}

/// The number as exactly `size` big-endian octets (it is below the modulus, so what is cut
/// off is zero).
fn limbs_to_be(limbs: &[u32], size: usize) -> Vec<u8> {
    let mut out: Vec<u8> = limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
    let excess = out.len().saturating_sub(size);
    out.drain(..excess);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::hazmat::rsa_encrypt;
    use rsa::{BoxedUint, PublicKey};

    /// An odd number of `bits` bits from a seed: the public operation's arithmetic works for
    /// any odd modulus, so no key needs generating.
    fn odd_modulus(bits: usize, seed: u8) -> Vec<u8> {
        let mut n = crate::jwt::test_bytes(bits.div_ceil(8), seed);
        let spare = 8 * n.len() - bits;
        n[0] = (n[0] | 0x80) >> spare;
        *n.last_mut().unwrap() |= 1;
        n
    }

    /// `s^e mod n` by the `rsa` crate, without leading zeros.
    fn reference(n: &[u8], e: u64, s: &[u8]) -> Vec<u8> {
        let key = PublicKey::new(BoxedUint::from_be_slice_vartime(n), BoxedUint::from(e)).unwrap();
        let m = rsa_encrypt(&key, &BoxedUint::from_be_slice_vartime(s)).unwrap();
        m.to_be_bytes_trimmed_vartime().to_vec()
    }

    /// Numbers below `n`, at its edges and in between, give what the `rsa` crate gives, for
    /// modulus sizes on and off octet and limb boundaries.
    #[test]
    fn the_public_operation_matches_the_rsa_crate() {
        for (bits, seed) in [
            (2048, 1),
            (2049, 2),
            (2055, 3),
            (2080, 4),
            (3072, 5),
            (4096, 6),
        ] {
            let n = odd_modulus(bits, seed);
            let ours = RsaPublic::new(&n, &[1, 0, 1]).unwrap();
            assert_eq!(ours.bits(), bits);
            let mut inputs: Vec<Vec<u8>> = (0..24)
                .map(|i| {
                    let mut s = crate::jwt::test_bytes(n.len(), 100 + i);
                    s[0] %= n[0]; // below n
                    s
                })
                .collect();
            let mut n_minus_one = n.clone();
            *n_minus_one.last_mut().unwrap() -= 1;
            let mut one = vec![0; n.len()];
            *one.last_mut().unwrap() = 1;
            inputs.extend([n_minus_one, one, vec![0; n.len()]]);
            for s in inputs {
                let got = ours.apply(&s).unwrap();
                assert_eq!(got.len(), n.len());
                assert_eq!(
                    strip_leading_zeros(&got),
                    reference(&n, 65537, &s),
                    "{bits} bits"
                );
            }
            // n itself, and anything longer or shorter than the modulus, is refused.
            assert!(ours.apply(&n).is_none());
            assert!(ours.apply(&n[1..]).is_none());
            assert!(ours.apply(&[&[0u8][..], &n[..]].concat()).is_none());
        }
    }

    #[test]
    fn odd_exponents_other_than_65537_work() {
        let n = odd_modulus(2048, 9);
        let mut s = crate::jwt::test_bytes(n.len(), 10);
        s[0] = 0;
        for e in [3u64, 17, 0x1_0000_0001, (1 << 33) - 1] {
            let ours = RsaPublic::new(&n, &e.to_be_bytes()).unwrap();
            assert_eq!(
                strip_leading_zeros(&ours.apply(&s).unwrap()),
                reference(&n, e, &s),
                "e = {e}"
            );
        }
    }

    #[test]
    fn unusable_keys_are_refused() {
        let n = odd_modulus(2048, 11);
        let e = [1, 0, 1];
        assert!(RsaPublic::new(&n, &e).is_some());
        assert!(RsaPublic::new(&[&[0, 0][..], &n[..]].concat(), &[0, 1, 0, 1]).is_some());
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert!(RsaPublic::new(&even, &e).is_none(), "even modulus");
        assert!(
            RsaPublic::new(&odd_modulus(2047, 12), &e).is_none(),
            "2047 bits"
        );
        assert!(
            RsaPublic::new(&odd_modulus(4097, 13), &e).is_none(),
            "4097 bits"
        );
        assert!(
            RsaPublic::new(&odd_modulus(4096, 13), &e).is_some(),
            "4096 bits"
        );
        for bad in [
            &[][..],
            &[1],
            &[2],
            &[0x01, 0x00, 0x00],
            &[2, 0, 0, 0, 0],
            &[0xff; 9],
        ] {
            assert!(RsaPublic::new(&n, bad).is_none(), "e = {bad:?}");
        }
    }
}
