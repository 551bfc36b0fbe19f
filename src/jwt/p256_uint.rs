//! 256-bit unsigned numbers as eight 32-bit limbs, least significant first: the plumbing
//! shared by the P-256 field (`p256_field`) and the scalars mod the group order
//! (`p256_ecdsa`).
//!
//! 32-bit limbs because Wasm multiplies 32 × 32 → 64 bits in one instruction, where 64-bit
//! limbs need an emulated 128-bit product (`__multi3`) for each limb pair.
//!
//! Everything here is variable-time: it only ever sees public values (keys, signatures,
//! message hashes), never a private key.

/// A 256-bit number, least significant limb first.
pub type U256 = [u32; 8];

/// A 512-bit product, least significant limb first.
pub type U512 = [u32; 16];

/// Big-endian octets as limbs.
pub fn from_be_bytes(bytes: &[u8; 32]) -> U256 {
    let mut out = [0u32; 8];
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks_exact(4)) {
        *limb = chunk.iter().fold(0, |acc, &b| (acc << 8) | u32::from(b));
    }
    out
}

/// The number as 32 big-endian octets.
#[cfg(test)]
pub fn to_be_bytes(a: &U256) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, limb) in out.rchunks_exact_mut(4).zip(a) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    out
}

pub fn is_zero(a: &U256) -> bool {
    a.iter().all(|&limb| limb == 0)
}

/// `a < b`.
pub fn less_than(a: &U256, b: &U256) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a + b` modulo 2²⁵⁶, and whether it carried out.
pub fn add(a: &U256, b: &U256) -> (U256, bool) {
    let mut out = [0u32; 8];
    let mut carry = 0u64;
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let sum = u64::from(x) + u64::from(y) + carry;
        *o = sum as u32;
        carry = sum >> 32;
    }
    (out, carry != 0)
}

/// `a − b` modulo 2²⁵⁶, and whether it borrowed.
pub fn sub(a: &U256, b: &U256) -> (U256, bool) {
    let mut out = [0u32; 8];
    let mut borrow = 0u64;
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let diff = u64::from(x).wrapping_sub(u64::from(y)).wrapping_sub(borrow);
        *o = diff as u32;
        borrow = diff >> 63;
    }
    (out, borrow != 0)
}

/// `a·b`, schoolbook: one row of eight 32 × 32 → 64-bit products per limb of `a`.
#[inline(always)]
pub fn mul_wide(a: &U256, b: &U256) -> U512 {
    let mut t = [0u32; 16];
    for (i, &ai) in a.iter().enumerate() {
        let ai = u64::from(ai);
        let mut carry = 0u64;
        for (tk, &bj) in t.iter_mut().skip(i).zip(b) {
            // At most (2³²−1) + (2³²−1)² + (2³²−1) = 2⁶⁴ − 1: no overflow.
            let v = u64::from(*tk) + ai * u64::from(bj) + carry;
            *tk = v as u32;
            carry = v >> 32;
        }
        if let Some(top) = t.get_mut(i + 8) {
            *top = carry as u32;
        }
    }
    t
}

/// `a²`: each cross product once, doubled, plus the squares on the diagonal (36 products
/// instead of 64).
#[inline(always)]
pub fn square_wide(a: &U256) -> U512 {
    let mut t = [0u32; 16];
    for (i, &ai) in a.iter().enumerate() {
        let ai = u64::from(ai);
        let mut carry = 0u64;
        for (tk, &aj) in t.iter_mut().skip(2 * i + 1).zip(a.iter().skip(i + 1)) {
            let v = u64::from(*tk) + ai * u64::from(aj) + carry;
            *tk = v as u32;
            carry = v >> 32;
        }
        if let Some(top) = t.get_mut(i + 8) {
            *top = carry as u32;
        }
    }
    super::limbs::double_and_add_squares(&mut t, a);
    t
}

/// `a⁻¹ mod m` for an odd prime `m` and `0 < a < m` (binary extended Euclid; variable
/// time). `None` for `a = 0`, or anything else without an inverse.
pub fn invert_vartime(a: &U256, m: &U256) -> Option<U256> {
    if is_zero(a) {
        return None;
    }
    let one = {
        let mut one = [0u32; 8];
        one[0] = 1;
        one
    };
    // Invariants: x1·a ≡ u and x2·a ≡ v (mod m), with x1, x2 < m.
    let (mut u, mut v) = (*a, *m);
    let (mut x1, mut x2) = (one, [0u32; 8]);
    while u != one && v != one {
        if is_zero(&u) || is_zero(&v) {
            return None; // gcd(a, m) ≠ 1
        }
        while u[0] & 1 == 0 {
            halve(&mut u);
            halve_mod(&mut x1, m);
        }
        while v[0] & 1 == 0 {
            halve(&mut v);
            halve_mod(&mut x2, m);
        }
        if less_than(&u, &v) {
            v = sub(&v, &u).0;
            x2 = sub_mod(&x2, &x1, m);
        } else {
            u = sub(&u, &v).0;
            x1 = sub_mod(&x1, &x2, m);
        }
    }
    Some(if u == one { x1 } else { x2 })
}

/// `a − b mod m` for `a, b < m`.
pub fn sub_mod(a: &U256, b: &U256, m: &U256) -> U256 {
    let (diff, borrow) = sub(a, b);
    if borrow {
        add(&diff, m).0
    } else {
        diff
    }
}

/// `a >>= 1`.
fn halve(a: &mut U256) {
    halve_with_top(a, 0);
}

/// `a = a/2 mod m` for odd `m` and `a < m`: `(a + m)/2` when `a` is odd.
fn halve_mod(a: &mut U256, m: &U256) {
    if a[0] & 1 == 0 {
        halve(a);
    } else {
        let (sum, carry) = add(a, m);
        *a = sum;
        halve_with_top(a, u32::from(carry));
    }
}

/// Shifts the 257-bit number `top·2²⁵⁶ + a` right by one bit into `a`.
fn halve_with_top(a: &mut U256, top: u32) {
    let mut incoming = top;
    for limb in a.iter_mut().rev() {
        let out = *limb & 1;
        *limb = (*limb >> 1) | (incoming << 31);
        incoming = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::bigint::{NonZero, U256 as Ref, U512 as RefWide};

    fn reference(a: &U256) -> Ref {
        Ref::from_be_slice(&to_be_bytes(a))
    }

    fn ours(a: &Ref) -> U256 {
        from_be_bytes(&a.to_be_bytes().into())
    }

    fn numbers() -> Vec<U256> {
        let mut out: Vec<U256> = (0..200)
            .map(|i| from_be_bytes(&crate::jwt::test_bytes(32, i).try_into().unwrap()))
            .collect();
        out.extend([[0; 8], [u32::MAX; 8], [1, 0, 0, 0, 0, 0, 0, 0]]);
        out.push([0, 0, 0, 0, 0, 0, 0, 1 << 31]);
        out.push([u32::MAX, 0, u32::MAX, 0, u32::MAX, 0, u32::MAX, 0]);
        out
    }

    #[test]
    fn octets_round_trip_big_endian() {
        let bytes: [u8; 32] = core::array::from_fn(|i| i as u8 + 1);
        let limbs = from_be_bytes(&bytes);
        assert_eq!(limbs[0], 0x1d1e1f20);
        assert_eq!(limbs[7], 0x01020304);
        assert_eq!(to_be_bytes(&limbs), bytes);
    }

    #[test]
    fn products_and_sums_match_crypto_bigint() {
        let numbers = numbers();
        for a in &numbers {
            assert_eq!(square_wide(a), mul_wide(a, a));
            for b in numbers.iter().step_by(7) {
                let product: RefWide = reference(a).concatenating_mul(&reference(b));
                let bytes = product.to_be_bytes();
                let wide = mul_wide(a, b);
                let mut expected = [0u32; 16];
                for (limb, chunk) in expected.iter_mut().zip(bytes.rchunks_exact(4)) {
                    *limb = u32::from_be_bytes(chunk.try_into().unwrap());
                }
                assert_eq!(wide, expected);
                let (sum, carry) = add(a, b);
                let (expected_sum, expected_carry) =
                    reference(a).carrying_add(&reference(b), Default::default());
                assert_eq!((sum, carry), (ours(&expected_sum), expected_carry.0 != 0));
                let (diff, borrow) = sub(a, b);
                assert_eq!(diff, ours(&reference(a).wrapping_sub(&reference(b))));
                assert_eq!(borrow, less_than(a, b));
                assert_eq!(less_than(a, b), reference(a) < reference(b));
            }
        }
    }

    #[test]
    fn inverses_match_crypto_bigint() {
        let p = super::super::p256_field::P;
        for m in [p, super::super::p256_ecdsa::N] {
            let modulus = NonZero::new(reference(&m)).unwrap();
            let mut inputs: Vec<U256> = numbers()
                .iter()
                .map(|a| ours(&reference(a).rem(&modulus)))
                .filter(|a| !is_zero(a))
                .collect();
            inputs.push(sub(&m, &[1, 0, 0, 0, 0, 0, 0, 0]).0);
            for a in inputs {
                let inverse = invert_vartime(&a, &m).unwrap();
                let expected = reference(&a).invert_mod(&modulus).unwrap();
                assert_eq!(inverse, ours(&expected));
            }
            assert_eq!(invert_vartime(&[0; 8], &m), None);
        }
        // No inverse: a shares a factor with m (and m even never reaches here; no loop).
        assert_eq!(
            invert_vartime(&[6, 0, 0, 0, 0, 0, 0, 0], &[9, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }
}
