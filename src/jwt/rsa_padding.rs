//! The signature encodings of RS* and PS* (RFC 8017 §9.2 EMSA-PKCS1-v1_5 and §9.1.2
//! EMSA-PSS-VERIFY), checked on the output of RSA's public operation. The inputs are public,
//! so plain comparisons are fine.

use sha2::Digest;

/// The DER `DigestInfo` prefix for SHA-256, -384 and -512 (RFC 8017 §9.2, note 1).
pub const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
pub const SHA384_PREFIX: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
pub const SHA512_PREFIX: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

/// Whether `em` (as long as the modulus) is exactly `00 01 FF…FF 00 ‖ DigestInfo ‖ hash`.
/// Building the one valid encoding and comparing (RFC 8017 §8.2.2 step 3) leaves no parser
/// to fool.
pub fn pkcs1_v15_matches(em: &[u8], prefix: &[u8], hash: &[u8]) -> bool {
    let t_len = prefix.len() + hash.len();
    // At least 8 octets of FF (RFC 8017 §9.2 step 3).
    let Some(padding) = em.len().checked_sub(t_len + 3).filter(|&p| p >= 8) else {
        return false;
    };
    let expected = [0x00, 0x01]
        .into_iter()
        .chain(std::iter::repeat_n(0xff, padding))
        .chain([0x00])
        .chain(prefix.iter().copied())
        .chain(hash.iter().copied());
    em.iter().copied().eq(expected)
}

/// EMSA-PSS-VERIFY with a salt as long as the hash (RFC 7518 §3.5). `m` is the public
/// operation's output as `k` octets, `modulus_bits` the key's size; `m_hash` is the hash of
/// the signed text.
pub fn pss_matches<D: Digest>(m: &[u8], modulus_bits: usize, m_hash: &[u8]) -> bool {
    let h_len = <D as Digest>::output_size();
    let s_len = h_len;
    let em_bits = modulus_bits.saturating_sub(1);
    let em_len = em_bits.div_ceil(8);
    // RFC 8017 §8.1.2 step 2c: EM is emLen octets, which is k − 1 when the modulus is one bit
    // past a whole octet; the octet dropped must then be zero.
    let Some(extra) = m.len().checked_sub(em_len) else {
        return false;
    };
    let Some((dropped, em)) = m.split_at_checked(extra) else {
        return false;
    };
    if dropped.iter().any(|&b| b != 0) || m_hash.len() != h_len || em_len < h_len + s_len + 2 {
        return false;
    }
    // Steps 4 and 5: EM = maskedDB ‖ H ‖ 0xbc.
    let Some((&0xbc, rest)) = em.split_last() else {
        return false;
    };
    let Some((masked_db, h)) = rest.split_at_checked(em_len - h_len - 1) else {
        return false;
    };
    // Step 6: the bits above emBits are zero.
    let top_mask = 0xffu8 >> (8 * em_len - em_bits);
    if masked_db.first().is_none_or(|&b| b & !top_mask != 0) {
        return false;
    }
    // Steps 7 to 9: DB = maskedDB xor MGF1(H), its top bits cleared.
    let mut db: Vec<u8> = masked_db
        .iter()
        .zip(mgf1::<D>(h, masked_db.len()))
        .map(|(a, b)| a ^ b)
        .collect();
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    // Step 10: DB = 00…00 ‖ 01 ‖ salt.
    let Some((padding, salt_part)) = db.split_at_checked(db.len() - s_len - 1) else {
        return false;
    };
    let Some((&0x01, salt)) = salt_part.split_first() else {
        return false;
    };
    if padding.iter().any(|&b| b != 0) {
        return false;
    }
    // Steps 12 to 14: H = Hash(00×8 ‖ mHash ‖ salt).
    let expected = D::new()
        .chain_update([0u8; 8])
        .chain_update(m_hash)
        .chain_update(salt)
        .finalize();
    expected.as_slice() == h
}

/// MGF1 (RFC 8017 §B.2.1): `len` octets of Hash(seed ‖ counter), counter from 0.
fn mgf1<D: Digest>(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + <D as Digest>::output_size());
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend_from_slice(
            &D::new()
                .chain_update(seed)
                .chain_update(counter.to_be_bytes())
                .finalize(),
        );
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}
