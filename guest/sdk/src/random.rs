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

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lowercase_and_two_digits_a_byte() {
        assert_eq!(super::to_hex(&[0, 0xab, 9]), "00ab09");
    }
}
