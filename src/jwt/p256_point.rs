//! Points of the P-256 curve y² = x³ − 3x + b, and `u1·G + u2·Q` for signature checks.
//!
//! Jacobian coordinates (x = X/Z², y = Y/Z³; Z = 0 is the point at infinity) with the
//! a = −3 doubling (3M + 5S) and mixed additions of affine table points (8M + 3S): lighter
//! than the complete projective formulas `p256` uses, at the price of handling the special
//! cases (equal points, opposite points, infinity) explicitly, which every function here does
//! because `r`, `s` and the hash are chosen by whoever sends the token.
//!
//! The double multiplication splits each 256-bit scalar into four 64-bit chunks and keeps,
//! per point, tables of odd multiples of `2^(64·c)·P` for each chunk `c` (the generator's
//! built once per process, a key's when it is loaded): the four chunks of both scalars then
//! share 65 doublings instead of 256, and the additions come from width-w NAF digits.
//!
//! Variable-time: only public values (keys, signatures, hashes) ever get here.

use std::sync::OnceLock;

use super::p256_field::Fe;
use super::p256_uint::U256;

/// The curve's `b`.
const B: Fe = fe([
    0x27d2_604b,
    0x3bce_3c3e,
    0xcc53_b0f6,
    0x651d_06b0,
    0x7698_86bc,
    0xb3eb_bd55,
    0xaa3a_93e7,
    0x5ac6_35d8,
]);

/// The generator G.
pub const G: Affine = Affine {
    x: fe([
        0xd898_c296,
        0xf4a1_3945,
        0x2deb_33a0,
        0x7703_7d81,
        0x63a4_40f2,
        0xf8bc_e6e5,
        0xe12c_4247,
        0x6b17_d1f2,
    ]),
    y: fe([
        0x37bf_51f5,
        0xcbb6_4068,
        0x6b31_5ece,
        0x2bce_3357,
        0x7c0f_9e16,
        0x8ee7_eb4a,
        0xfe1a_7f9b,
        0x4fe3_42e2,
    ]),
};

/// Scalars are split into this many chunks of `CHUNK_BITS` bits.
const CHUNKS: usize = 4;
const CHUNK_BITS: usize = 64;
/// NAF width of the generator's table: 4 × 32 points (8 KB, built once per process).
const G_WIDTH: usize = 7;
/// NAF width of a key's table: 4 × 8 points (2 KB per key).
pub const KEY_WIDTH: usize = 5;

const fn fe(limbs: U256) -> Fe {
    Fe::from_limbs_unchecked(limbs)
}

/// A point other than infinity, in affine coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affine {
    pub x: Fe,
    pub y: Fe,
}

impl Affine {
    /// The point (x, y) if it is on the curve.
    pub fn new(x: Fe, y: Fe) -> Option<Affine> {
        let rhs = x.square().mul(x).sub(x.double().add(x)).add(B);
        (y.square() == rhs).then_some(Affine { x, y })
    }

    pub fn neg(self) -> Affine {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }
}

/// A point in Jacobian coordinates; Z = 0 is the point at infinity.
#[derive(Clone, Copy, Debug)]
pub struct Jacobian {
    pub x: Fe,
    pub y: Fe,
    pub z: Fe,
}

impl From<Affine> for Jacobian {
    fn from(p: Affine) -> Jacobian {
        Jacobian {
            x: p.x,
            y: p.y,
            z: Fe::ONE,
        }
    }
}

impl Jacobian {
    pub const INFINITY: Jacobian = Jacobian {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    pub fn is_infinity(&self) -> bool {
        self.z.is_zero()
    }

    /// The affine point; `None` for infinity.
    #[cfg(test)]
    pub fn to_affine(self) -> Option<Affine> {
        let z_inv = self.z.invert()?;
        let z_inv2 = z_inv.square();
        Some(Affine {
            x: self.x.mul(z_inv2),
            y: self.y.mul(z_inv2.mul(z_inv)),
        })
    }

    /// 2P with a = −3 ("dbl-2001-b"). Infinity stays infinity (Z3 = 2·Y1·Z1), and P-256 has no
    /// point of order 2 (y = 0), so no other case is special.
    pub fn double(&self) -> Jacobian {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(gamma);
        let t = self.x.sub(delta).mul(self.x.add(delta));
        let alpha = t.double().add(t);
        let beta4 = beta.double().double();
        let x3 = alpha.square().sub(beta4.double());
        let z3 = self.y.add(self.z).square().sub(gamma).sub(delta);
        let gamma2_8 = gamma.square().double().double().double();
        let y3 = alpha.mul(beta4.sub(x3)).sub(gamma2_8);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// P + Q for an affine Q (8M + 3S); P = Q doubles, P = −Q gives infinity.
    pub fn add_affine(&self, q: &Affine) -> Jacobian {
        if self.is_infinity() {
            return Jacobian::from(*q);
        }
        let z1z1 = self.z.square();
        let u2 = q.x.mul(z1z1);
        let s2 = q.y.mul(self.z).mul(z1z1);
        self.add_with(self.x, self.y, u2.sub(self.x), s2.sub(self.y), self.z)
    }

    /// P + Q for Jacobian points, every case included (only used when tables are built).
    pub fn add(&self, q: &Jacobian) -> Jacobian {
        if self.is_infinity() {
            return *q;
        }
        if q.is_infinity() {
            return *self;
        }
        let z1z1 = self.z.square();
        let z2z2 = q.z.square();
        let u1 = self.x.mul(z2z2);
        let u2 = q.x.mul(z1z1);
        let s1 = self.y.mul(q.z).mul(z2z2);
        let s2 = q.y.mul(self.z).mul(z1z1);
        self.add_with(u1, s1, u2.sub(u1), s2.sub(s1), self.z.mul(q.z))
    }

    /// The end of an addition once U1, S1, H = U2 − U1 and R = S2 − S1 are known (`z1z2` is
    /// Z1·Z2, or Z1 when Q is affine): P = Q doubles, P = −Q gives infinity.
    fn add_with(&self, u1: Fe, s1: Fe, h: Fe, r: Fe, z1z2: Fe) -> Jacobian {
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::INFINITY
            };
        }
        let hh = h.square();
        let hhh = h.mul(hh);
        let v = u1.mul(hh);
        let x3 = r.square().sub(hhh).sub(v.double());
        let y3 = r.mul(v.sub(x3)).sub(s1.mul(hhh));
        Jacobian {
            x: x3,
            y: y3,
            z: z1z2.mul(h),
        }
    }
}

/// Odd multiples `(2k+1)·2^(64·c)·P`, for `k < 2^(width−2)` and each chunk `c`, in affine
/// coordinates (so the main loop adds them with the cheaper mixed addition).
pub struct Table {
    width: usize,
    points: Vec<Affine>,
}

impl Table {
    /// The table for `p` (never infinity: every point of P-256 but infinity has prime order n,
    /// so no multiple below n is infinity). `None` only if that were violated.
    pub fn new(p: &Affine, width: usize) -> Option<Table> {
        let per_chunk = 1usize << (width - 2);
        let mut points = Vec::with_capacity(CHUNKS * per_chunk);
        let mut base = Jacobian::from(*p);
        for chunk in 0..CHUNKS {
            if chunk > 0 {
                for _ in 0..CHUNK_BITS {
                    base = base.double();
                }
            }
            let twice = base.double();
            let mut multiple = base;
            for _ in 0..per_chunk {
                points.push(multiple);
                multiple = multiple.add(&twice);
            }
        }
        Some(Table {
            width,
            points: to_affine_all(&points)?,
        })
    }

    /// The generator's table, built on first use and kept for the life of the process.
    pub fn generator() -> &'static Table {
        static TABLE: OnceLock<Option<Table>> = OnceLock::new();
        // G is a valid point, so the table always exists; the fallback keeps this panic-free.
        static EMPTY: Table = Table {
            width: G_WIDTH,
            points: Vec::new(),
        };
        TABLE
            .get_or_init(|| Table::new(&G, G_WIDTH))
            .as_ref()
            .unwrap_or(&EMPTY)
    }

    /// `digit·2^(64·chunk)·P` for an odd digit; `None` if outside the table.
    fn get(&self, chunk: usize, digit: i8) -> Option<Affine> {
        let index = chunk * (1 << (self.width - 2)) + usize::from(digit.unsigned_abs() >> 1);
        let point = *self.points.get(index)?;
        Some(if digit < 0 { point.neg() } else { point })
    }
}

/// Affine coordinates of all of `points` with one field inversion (Montgomery's trick);
/// `None` if any is infinity.
fn to_affine_all(points: &[Jacobian]) -> Option<Vec<Affine>> {
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = Fe::ONE;
    for p in points {
        prefix.push(acc);
        acc = acc.mul(p.z);
    }
    let mut inv = acc.invert()?; // 1/(z0·z1·…); zero if any z is
    let mut out = vec![G; points.len()];
    for ((slot, p), before) in out.iter_mut().zip(points).zip(&prefix).rev() {
        let z_inv = inv.mul(*before);
        inv = inv.mul(p.z);
        let z_inv2 = z_inv.square();
        *slot = Affine {
            x: p.x.mul(z_inv2),
            y: p.y.mul(z_inv2.mul(z_inv)),
        };
    }
    Some(out)
}

/// NAF digits of width `width` of a 256-bit scalar, position 0 first: odd digits in
/// (−2^(w−1), 2^(w−1)) with at least w − 1 zeros after each, `Σ dᵢ·2ⁱ = k`. A scalar below
/// 2²⁵⁶ needs at most 257 positions.
fn wnaf(k: &U256, width: usize) -> [i8; 257] {
    let words: [u64; 4] = std::array::from_fn(|i| {
        let low = k.get(2 * i).copied().unwrap_or(0);
        let high = k.get(2 * i + 1).copied().unwrap_or(0);
        u64::from(low) | u64::from(high) << 32
    });
    let full = 1u64 << width;
    let mask = full - 1;
    let mut digits = [0i8; 257];
    let mut pos = 0;
    let mut carry = 0u64;
    while pos < 256 {
        let (index, bit) = (pos / 64, pos % 64);
        let mut bits = words.get(index).copied().unwrap_or(0) >> bit;
        if bit + width > 64 {
            bits |= words.get(index + 1).copied().unwrap_or(0) << (64 - bit);
        }
        let window = carry + (bits & mask);
        if window & 1 == 0 {
            pos += 1;
            continue;
        }
        let digit = if window < full / 2 {
            carry = 0;
            window as i64
        } else {
            carry = 1;
            window as i64 - full as i64
        };
        if let Some(slot) = digits.get_mut(pos) {
            *slot = digit as i8;
        }
        pos += width;
    }
    // A carry left over is a 1 at position 256 (an odd window above half its range had its
    // top bit at 255 or below, so the carry lands at 256 at the latest).
    if carry == 1 {
        if let Some(slot) = digits.get_mut(256) {
            *slot = 1;
        }
    }
    digits
}

/// `u1·G + u2·Q` for `q` the table of Q (width `KEY_WIDTH`), `u1, u2 < 2²⁵⁶`.
pub fn double_mul(u1: &U256, u2: &U256, q: &Table) -> Jacobian {
    let g = Table::generator();
    let streams = [(wnaf(u1, g.width), g), (wnaf(u2, q.width), q)];
    let mut acc = Jacobian::INFINITY;
    // Chunk c's digit at offset i is digit 64·c + i; the last chunk also has offset 64 (256).
    for offset in (0..=CHUNK_BITS).rev() {
        if !acc.is_infinity() {
            acc = acc.double();
        }
        for chunk in 0..CHUNKS {
            if offset == CHUNK_BITS && chunk + 1 < CHUNKS {
                continue;
            }
            for (digits, table) in &streams {
                let digit = digits
                    .get(chunk * CHUNK_BITS + offset)
                    .copied()
                    .unwrap_or(0);
                if digit != 0 {
                    if let Some(point) = table.get(chunk, digit) {
                        acc = acc.add_affine(&point);
                    }
                }
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::super::p256_uint::{self as uint, from_be_bytes};
    use super::*;
    use p256::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
    use p256::elliptic_curve::PrimeField;
    use p256::{AffinePoint, ProjectivePoint, Scalar};

    fn scalar(k: &U256) -> Scalar {
        Scalar::from_repr(uint::to_be_bytes(k).into()).unwrap()
    }

    /// Our affine point as p256's (`None` for infinity).
    fn theirs(p: &Jacobian) -> ProjectivePoint {
        match p.to_affine() {
            None => ProjectivePoint::IDENTITY,
            Some(a) => {
                let mut sec1 = vec![4u8];
                sec1.extend(a.x.to_be_bytes());
                sec1.extend(a.y.to_be_bytes());
                let point = p256::Sec1Point::from_bytes(&sec1).unwrap();
                ProjectivePoint::from(AffinePoint::from_sec1_point(&point).unwrap())
            }
        }
    }

    fn ours(p: &ProjectivePoint) -> Option<Affine> {
        let sec1 = p.to_affine().to_sec1_point(false);
        let x = Fe::from_be_bytes(sec1.x()?.as_slice().try_into().unwrap()).unwrap();
        let y = Fe::from_be_bytes(sec1.y()?.as_slice().try_into().unwrap()).unwrap();
        Affine::new(x, y)
    }

    fn n_minus(k: u32) -> U256 {
        uint::sub(&super::super::p256_ecdsa::N, &[k, 0, 0, 0, 0, 0, 0, 0]).0
    }

    fn scalars() -> Vec<U256> {
        let mut out = vec![
            [0; 8],
            [1, 0, 0, 0, 0, 0, 0, 0],
            [2, 0, 0, 0, 0, 0, 0, 0],
            n_minus(1),
            n_minus(2),
            [u32::MAX, u32::MAX, 0, 0, 0, 0, 0, 0],
            [
                0,
                0,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                u32::MAX,
                0x7fff_ffff,
            ],
            [0x5555_5555; 8],
            [
                0xaaaa_aaaa,
                0xaaaa_aaaa,
                0xaaaa_aaaa,
                0xaaaa_aaaa,
                0,
                0,
                0,
                0x0aaa_aaaa,
            ],
        ];
        for seed in 0..40 {
            let k = from_be_bytes(&crate::jwt::test_bytes(32, 50 + seed).try_into().unwrap());
            let n = super::super::p256_ecdsa::N;
            out.push(if uint::less_than(&k, &n) {
                k
            } else {
                uint::sub(&k, &n).0
            });
        }
        out
    }

    #[test]
    fn the_generator_is_p256s() {
        assert_eq!(ours(&ProjectivePoint::GENERATOR), Some(G));
        assert!(Affine::new(G.x, G.y.add(Fe::ONE)).is_none());
    }

    #[test]
    fn wnaf_digits_add_up_to_the_scalar() {
        for k in scalars().into_iter().chain([[u32::MAX; 8]]) {
            for width in [2, 4, 5, 7] {
                let digits = wnaf(&k, width);
                // Σ dᵢ·2ⁱ from the top, in a 288-bit two's complement accumulator.
                let mut acc = [0u32; 9];
                for &d in digits.iter().rev() {
                    let mut carry = 0u64;
                    for limb in acc.iter_mut() {
                        let v = (u64::from(*limb) << 1) | carry;
                        *limb = v as u32;
                        carry = v >> 32;
                    }
                    let add = i64::from(d);
                    let mut carry = add;
                    for limb in acc.iter_mut() {
                        let v = i64::from(*limb) + carry;
                        *limb = v as u32;
                        carry = v >> 32;
                    }
                    if d != 0 {
                        assert!(d % 2 != 0 && i64::from(d).abs() < 1 << (width - 1));
                    }
                }
                assert_eq!(acc[..8], k[..], "width {width}");
                assert_eq!(acc[8], 0);
            }
        }
    }

    /// Scalars 0, 1, 2, n − 1, n − 2 and random ones times G and times a random point, alone
    /// and together, match p256.
    #[test]
    fn double_multiplication_matches_p256() {
        let q_scalar = scalar(&scalars()[20]);
        let q_point = ProjectivePoint::GENERATOR * q_scalar;
        let q = ours(&q_point).unwrap();
        let table = Table::new(&q, KEY_WIDTH).unwrap();
        let scalars = scalars();
        for (i, u1) in scalars.iter().enumerate() {
            for u2 in scalars.iter().skip(i % 5).step_by(5) {
                let got = double_mul(u1, u2, &table);
                let expected = ProjectivePoint::GENERATOR * scalar(u1) + q_point * scalar(u2);
                assert_eq!(theirs(&got), expected, "{u1:x?} {u2:x?}");
            }
        }
        // u1·G + u2·Q = infinity when Q = G and u2 = n − u1.
        let g_table = Table::new(&G, KEY_WIDTH).unwrap();
        for u1 in scalars.iter().filter(|k| !uint::is_zero(k)) {
            let u2 = uint::sub(&super::super::p256_ecdsa::N, u1).0;
            assert!(double_mul(u1, &u2, &g_table).is_infinity());
            // And u1 = u2 doubles through the addition.
            let twice = double_mul(u1, u1, &g_table);
            assert_eq!(
                theirs(&twice),
                ProjectivePoint::GENERATOR * (scalar(u1) + scalar(u1))
            );
        }
    }

    #[test]
    fn additions_handle_every_special_case() {
        let p = Jacobian::from(G);
        let two_p = p.double();
        let minus = Jacobian::from(G.neg());
        // P + P doubles; P + (−P) is infinity; infinity on either side is the other one.
        assert_eq!(theirs(&p.add(&p)), theirs(&two_p));
        assert_eq!(theirs(&p.add_affine(&G)), theirs(&two_p));
        assert!(p.add(&minus).is_infinity());
        assert!(p.add_affine(&G.neg()).is_infinity());
        assert_eq!(theirs(&Jacobian::INFINITY.add(&p)), theirs(&p));
        assert_eq!(theirs(&p.add(&Jacobian::INFINITY)), theirs(&p));
        assert_eq!(theirs(&Jacobian::INFINITY.add_affine(&G)), theirs(&p));
        assert!(Jacobian::INFINITY.double().is_infinity());
        assert!(Jacobian::INFINITY.to_affine().is_none());
        // The same with Z ≠ 1 on the Jacobian side.
        let three_p = two_p.add(&p);
        let three = ours(&(ProjectivePoint::GENERATOR * Scalar::from(3u64))).unwrap();
        assert_eq!(three_p.to_affine(), Some(three));
        assert_eq!(
            theirs(&three_p.add_affine(&three)),
            ProjectivePoint::GENERATOR * Scalar::from(6u64)
        );
        assert!(three_p.add_affine(&three.neg()).is_infinity());
        assert!(three_p.add(&Jacobian::from(three.neg())).is_infinity());
        assert_eq!(
            theirs(&three_p.add(&three_p)),
            ProjectivePoint::GENERATOR * Scalar::from(6u64)
        );
        // (n − 1)·G = −G.
        let table = Table::new(&G, KEY_WIDTH).unwrap();
        assert_eq!(
            double_mul(&[0; 8], &n_minus(1), &table).to_affine(),
            Some(G.neg())
        );
        assert!(double_mul(&[0; 8], &[0; 8], &table).is_infinity());
    }

    #[test]
    fn tables_hold_the_odd_multiples_of_each_chunk() {
        let table = Table::generator();
        assert_eq!(table.points.len(), CHUNKS << (G_WIDTH - 2));
        for chunk in 0..CHUNKS {
            for digit in [1i8, 3, -5, 63, -63] {
                let mut k = [0u32; 8];
                k[2 * chunk] = digit.unsigned_abs().into();
                let expected = ProjectivePoint::GENERATOR * scalar(&k);
                let expected = if digit < 0 { -expected } else { expected };
                assert_eq!(
                    table
                        .get(chunk, digit)
                        .map(Jacobian::from)
                        .map(|p| theirs(&p)),
                    Some(expected)
                );
            }
        }
        assert!(table.get(CHUNKS, 1).is_none());
    }

    #[test]
    fn only_points_on_the_curve_are_accepted() {
        assert!(Affine::new(Fe::ZERO, Fe::ZERO).is_none());
        assert!(Affine::new(G.x, G.y.neg()).is_some());
        assert!(Affine::new(G.y, G.x).is_none());
    }
}
