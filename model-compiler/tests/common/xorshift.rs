// The deterministic xorshift generator of the property tests (the compiler's parser and mutation
// tests, the importer's damaged files): every run checks the same cases. Included by path (`mod`) or
// with `include!`, so no inner attributes here.

/// Marsaglia's xorshift64. The state must not be 0.
pub struct Rng(pub u64);

impl Rng {
    /// A generator whose state comes from `seed` (any value, 0 included).
    #[allow(dead_code)]
    pub fn seeded(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}
