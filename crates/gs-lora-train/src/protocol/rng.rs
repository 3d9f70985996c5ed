//! The random streams the official code draws its class orders and subsets from, reproduced
//! exactly: CPython's `random` module and NumPy's legacy `RandomState`, both on the Mersenne
//! Twister MT19937.
//!
//! - CPython: `random.seed(n)` for an integer `n` seeds MT19937 with `init_by_array` on the
//!   32-bit words of `|n|` (least significant first); `getrandbits(k)` (k ≤ 32) is the next
//!   word's top `k` bits; `_randbelow(n)` draws `getrandbits(n.bit_length())` until it is below
//!   `n`; `shuffle` swaps `x[i]` with `x[_randbelow(i + 1)]` for `i` from the end down to 1;
//!   `sample` picks from a shrinking pool when the population is small and by rejection from a
//!   set otherwise; `random()` is 53 bits from two words.
//! - NumPy (`np.random.seed(n)`, `RandomState(n)`): `init_genrand(n)`; `shuffle` swaps `x[i]`
//!   with `x[j]`, `j` a 32-bit word masked to the smallest all-ones mask ≥ `i`, redrawn while
//!   above `i`.

use crate::error::{Result, TrainError};

const N: usize = 624;
const M: usize = 397;

/// The Mersenne Twister MT19937 (Matsumoto and Nishimura, 1998), 32-bit output.
#[derive(Debug, Clone)]
struct Mt19937 {
    state: [u32; N],
    index: usize,
}

impl Mt19937 {
    /// `init_genrand(seed)`.
    fn from_seed(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let previous = state[i - 1] ^ (state[i - 1] >> 30);
            state[i] = 1_812_433_253u32
                .wrapping_mul(previous)
                .wrapping_add(i as u32);
        }
        Self { state, index: N }
    }

    /// `init_by_array(key)`.
    fn from_key(key: &[u32]) -> Self {
        let mut mt = Self::from_seed(19_650_218);
        let state = &mut mt.state;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let previous = state[i - 1] ^ (state[i - 1] >> 30);
            state[i] = (state[i] ^ previous.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                state[0] = state[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let previous = state[i - 1] ^ (state[i - 1] >> 30);
            state[i] = (state[i] ^ previous.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                state[0] = state[N - 1];
                i = 1;
            }
        }
        state[0] = 0x8000_0000;
        mt
    }

    /// The next 32-bit word (`genrand_uint32`).
    fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        let state = &mut self.state;
        for i in 0..N {
            let y = (state[i] & 0x8000_0000) | (state[(i + 1) % N] & 0x7fff_ffff);
            let magic = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            state[i] = state[(i + M) % N] ^ (y >> 1) ^ magic;
        }
        self.index = 0;
    }
}

/// CPython's `random.Random`, as the official classification code uses it.
#[derive(Debug, Clone)]
pub struct PythonRandom(Mt19937);

impl PythonRandom {
    /// `random.seed(seed)` for an integer seed (the sign is dropped, as CPython does).
    pub fn new(seed: i128) -> Self {
        let mut magnitude = seed.unsigned_abs();
        let mut key = Vec::new();
        while magnitude > 0 {
            key.push(magnitude as u32);
            magnitude >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        Self(Mt19937::from_key(&key))
    }

    /// `getrandbits(bits)` for `1 ≤ bits ≤ 32`.
    fn bits(&mut self, bits: u32) -> u32 {
        self.0.next_u32() >> (32 - bits)
    }

    /// `_randbelow(n)`: uniform in `[0, n)`, `n ≥ 1`.
    fn below(&mut self, n: u32) -> u32 {
        let bits = 32 - n.leading_zeros();
        loop {
            let r = self.bits(bits);
            if r < n {
                return r;
            }
        }
    }

    /// `random()`: uniform in `[0, 1)` with 53 bits.
    pub fn random(&mut self) -> f64 {
        let a = f64::from(self.0.next_u32() >> 5);
        let b = f64::from(self.0.next_u32() >> 6);
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `shuffle(items)` in place.
    ///
    /// # Errors
    /// [`TrainError::InvalidSetting`] for 2³² items or more (CPython draws several words there).
    pub fn shuffle<T>(&mut self, items: &mut [T]) -> Result<()> {
        let n = length(items.len())?;
        for i in (1..n).rev() {
            let j = self.below(i + 1);
            items.swap(i as usize, j as usize);
        }
        Ok(())
    }

    /// `sample(population, k)`: `k` distinct items in selection order.
    ///
    /// # Errors
    /// [`TrainError::InvalidSetting`] when `k` exceeds the population, as CPython's
    /// `ValueError`, or for a population of 2³² items or more.
    pub fn sample<T: Clone>(&mut self, population: &[T], k: usize) -> Result<Vec<T>> {
        length(population.len())?;
        let n = population.len();
        if k > n {
            return Err(TrainError::InvalidSetting(format!(
                "cannot sample {k} items from a population of {n}"
            )));
        }
        let mut set_size = 21usize;
        if k > 5 {
            let exponent = ((k * 3) as f64).ln() / 4f64.ln();
            set_size += 4usize.pow(exponent.ceil() as u32);
        }
        if n <= set_size {
            let mut pool = population.to_vec();
            Ok((0..k)
                .map(|i| {
                    let j = self.below((n - i) as u32) as usize;
                    let chosen = pool[j].clone();
                    pool[j] = pool[n - i - 1].clone();
                    chosen
                })
                .collect())
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            Ok((0..k)
                .map(|_| {
                    let mut j = self.below(n as u32) as usize;
                    while !selected.insert(j) {
                        j = self.below(n as u32) as usize;
                    }
                    population[j].clone()
                })
                .collect())
        }
    }

    /// `choices(population, k=k)`: `k` draws with replacement.
    pub fn choices<T: Clone>(&mut self, population: &[T], k: usize) -> Vec<T> {
        let n = population.len() as f64;
        (0..k)
            .map(|_| population[(self.random() * n).floor() as usize].clone())
            .collect()
    }
}

/// NumPy's legacy `RandomState`, as the official detection code uses it.
#[derive(Debug, Clone)]
pub struct NumpyRandomState(Mt19937);

impl NumpyRandomState {
    /// `np.random.seed(seed)` / `RandomState(seed)` for a seed in `[0, 2³²)`.
    pub fn new(seed: u32) -> Self {
        Self(Mt19937::from_seed(seed))
    }

    /// `random_interval(max)`: uniform in `[0, max]`, `max < 2³²`.
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let value = self.0.next_u32() & mask;
            if value <= max {
                return value;
            }
        }
    }

    /// `shuffle(items)` in place (1-D).
    ///
    /// # Errors
    /// [`TrainError::InvalidSetting`] for 2³² items or more (NumPy draws 64-bit words there).
    pub fn shuffle<T>(&mut self, items: &mut [T]) -> Result<()> {
        let n = length(items.len())?;
        for i in (1..n).rev() {
            let j = self.interval(i) as usize;
            items.swap(i as usize, j);
        }
        Ok(())
    }
}

/// `len` as a 32-bit count: both generators draw one 32-bit word per choice below 2³².
fn length(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| {
        TrainError::InvalidSetting(format!(
            "{len} items are beyond the 32-bit draws reproduced here"
        ))
    })
}
