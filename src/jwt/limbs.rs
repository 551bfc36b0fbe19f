//! Helpers for numbers as little-endian 32-bit limbs, shared by the RSA (`rsa_public`) and
//! P-256 (`p256_uint`) arithmetic.

/// The last step of a squaring: `t` holds the cross products `aᵢ·aⱼ` (i < j) once; this
/// doubles them and adds the squares `aᵢ²` on the diagonal, two limbs of `t` per limb of `a`.
#[inline(always)]
pub fn double_and_add_squares(t: &mut [u32], a: &[u32]) {
    let mut shifted_out = 0u64;
    let mut carry = 0u64;
    for (pair, &ai) in t.chunks_exact_mut(2).zip(a) {
        let square = u64::from(ai) * u64::from(ai);
        let [low, high] = pair else { continue };
        let low2 = (u64::from(*low) << 1) | shifted_out;
        let high2 = (u64::from(*high) << 1) | (low2 >> 32);
        shifted_out = high2 >> 32;
        let sum = (low2 & 0xffff_ffff) + (square & 0xffff_ffff) + carry;
        *low = sum as u32;
        let sum = (high2 & 0xffff_ffff) + (square >> 32) + (sum >> 32);
        *high = sum as u32;
        carry = sum >> 32;
    }
}
