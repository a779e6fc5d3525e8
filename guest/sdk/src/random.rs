//! Random bytes from the host (`wasi:random`), for secrets and tokens.

use crate::bindings::wasi::random::random;

/// `N` random bytes.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    bytes.copy_from_slice(&random::get_random_bytes(N as u64));
    bytes
}

/// `bytes` random bytes as lowercase hex: twice as many digits.
pub fn hex(bytes: u64) -> String {
    to_hex(&random::get_random_bytes(bytes))
}

/// Lowercase hex of `bytes`. A digit table rather than `format!` per
/// byte, which cost a hardened check more than hashing its secret did.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_and_two_digits_a_byte() {
        assert_eq!(super::to_hex(&[0, 0xab, 9, 0xf0, 0xff]), "00ab09f0ff");
    }
}
