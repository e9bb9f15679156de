//! A tiny deterministic PRNG (SplitMix64): the same `SEED` gives the same data, with no
//! dependency on a random-number crate.

/// SplitMix64 (Steele, Lea, Flood 2014): fast, full-period, good enough for test data.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A generator seeded from the text `s` (FNV-1a), for data derived from an address.
    pub fn from_text(s: &str) -> Self {
        let hash = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        SplitMix64(hash)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `0x` followed by `bytes` random bytes in lower-case hex (20 → address, 32 → hash).
    pub fn hex(&mut self, bytes: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let len = 2 + bytes * 2;
        let mut out = String::with_capacity(len);
        out.push_str("0x");
        while out.len() < len {
            // The most significant nibbles of each 64-bit word first, as `{:016x}` prints them.
            let word = self.next_u64();
            let mut digits = [0u8; 16];
            for (i, digit) in digits.iter_mut().enumerate() {
                *digit = DIGITS[((word >> (60 - 4 * i)) & 0xf) as usize];
            }
            let take = (len - out.len()).min(16);
            // Hex digits are ASCII, so this never falls back.
            out.push_str(std::str::from_utf8(&digits[..take]).unwrap_or_default());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_well_formed_hex() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        assert_eq!(a.next_u64(), b.next_u64());
        let address = a.hex(20);
        assert_eq!(address.len(), 42);
        assert!(
            address[2..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(a.hex(32).len(), 66);
    }

    #[test]
    fn hex_digits_are_the_words_printed_most_significant_first() {
        let mut words = SplitMix64::new(3);
        let (w1, w2) = (words.next_u64(), words.next_u64());
        let expected = format!("0x{w1:016x}{:08x}", w2 >> 32);
        assert_eq!(SplitMix64::new(3).hex(12), expected);
    }
}
