//! Keras' dtype policies, per model: `float32` (the default) and `mixed_bfloat16`.
//!
//! Under `mixed_bfloat16`, as in Keras, the weights (variables) stay f32 and the matrix products
//! compute in bfloat16: both operands of every product that goes through the runtime's GEMM
//! ([`crate::kernels::gemm::sgemm`], [`crate::kernels::gemm::sgemm_blocks`]: Dense, the attention
//! projections and scores, the recurrent layers, and the convolutions that run im2col + GEMM) are
//! rounded to bf16, and the products are summed in f32, when the product is large enough to gain
//! from it ([`crate::kernels::gemm::bf16_pays`], a threshold measured on the GEMM); smaller ones, and
//! the convolutions' direct path (faster than im2col + bf16), stay f32. A layer written with
//! `dtype = "float32"` keeps its products in f32 (Keras' float32 layer in a mixed model). That holds for
//! the forward pass and for the backward products (gradients of inputs and weights), as TensorFlow
//! computes the gradients of a bf16 matmul in bf16. Everything else stays f32: activations between
//! layers, the losses, metrics, normalizations, softmax, optimizer steps, and the depthwise and
//! grouped convolutions (direct loops, no GEMM).
//!
//! The policy is set on a model, `model.set_dtype_policy(DTypePolicy::MixedBfloat16)` (Keras:
//! `dtype="mixed_bfloat16"` on a layer or model, or `keras.config.set_dtype_policy`), and applies
//! to everything that model runs: `predict`, `forward`, `backward`, and the trainer's `fit`,
//! `evaluate` and steps. The setter returns a [`PolicyStatus`], the policy in effect and why:
//! - with AVX512_BF16 (`vdpbf16ps`), bf16 runs on it;
//! - without it, the policy falls back to `float32` (modelc has no AMX kernel yet, and an emulation
//!   would be slower than f32);
//! - `MODELC_BF16=off` forces the fallback, `MODELC_BF16=emulate` forces the portable emulation,
//!   which computes the same sums as the instruction on any CPU (for tests and CI).

use crate::error::{Error, Result};
use crate::kernels::gemm::{avx512_bf16_available, Bf16Kernel, Bf16Scope};
use crate::network::Network;

/// The environment variable read by [`Bf16Mode::from_env`]: `off` (or `0`, `false`, `no`, `f32`)
/// forces the f32 fallback; `emulate` forces the portable bf16 kernel; anything else, or unset,
/// uses the hardware when the CPU has it.
pub const BF16_ENV: &str = "MODELC_BF16";

/// A dtype policy, as Keras names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DTypePolicy {
    /// Everything in f32 (Keras' default, `"float32"`).
    #[default]
    Float32,
    /// f32 weights, matrix products in bf16 with f32 sums, f32 losses (`"mixed_bfloat16"`).
    MixedBfloat16,
}

impl DTypePolicy {
    /// The Keras name: `"float32"` or `"mixed_bfloat16"`.
    pub fn name(self) -> &'static str {
        match self {
            DTypePolicy::Float32 => "float32",
            DTypePolicy::MixedBfloat16 => "mixed_bfloat16",
        }
    }
}

impl std::fmt::Display for DTypePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DTypePolicy {
    type Err = Error;

    /// Parses a Keras policy name: `"float32"` or `"mixed_bfloat16"`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "float32" => Ok(DTypePolicy::Float32),
            "mixed_bfloat16" => Ok(DTypePolicy::MixedBfloat16),
            other => Err(Error::config(
                "dtype_policy",
                other,
                "modelc supports \"float32\" and \"mixed_bfloat16\" (weights, activations and losses stay float32)",
            )),
        }
    }
}

/// How the bf16 kernel is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Bf16Mode {
    /// AVX512_BF16 when the CPU has it, else the f32 fallback.
    #[default]
    Auto,
    /// Always the f32 fallback.
    Off,
    /// Always the portable emulation (the same sums as AVX512_BF16; slower than f32).
    Emulate,
}

impl Bf16Mode {
    /// The mode `MODELC_BF16` asks for (see [`BF16_ENV`]).
    pub fn from_env() -> Bf16Mode {
        std::env::var(BF16_ENV).map_or(Bf16Mode::Auto, |v| Bf16Mode::parse(&v))
    }

    /// The mode a value of `MODELC_BF16` asks for.
    fn parse(value: &str) -> Bf16Mode {
        match value.trim().to_ascii_lowercase().as_str() {
            "off" | "0" | "false" | "no" | "f32" | "float32" => Bf16Mode::Off,
            "emulate" => Bf16Mode::Emulate,
            _ => Bf16Mode::Auto,
        }
    }
}

/// A model's dtype policy: the one asked for, the one in effect, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyStatus {
    /// The policy asked for.
    pub requested: DTypePolicy,
    /// The policy the model computes with.
    pub effective: DTypePolicy,
    /// The kernel of the bf16 products (`None` under `float32`).
    pub kernel: Option<Bf16Kernel>,
    /// Why `effective` is what it is, for logs.
    pub reason: &'static str,
}

impl PolicyStatus {
    /// Whether the policy asked for is the one in effect.
    pub fn is_effective(&self) -> bool {
        self.requested == self.effective
    }

    /// Makes this thread's GEMMs follow the policy until the guard is dropped.
    pub fn scope(&self) -> Bf16Scope {
        Bf16Scope::new(self.kernel)
    }
}

/// Settles `policy` on this CPU under `mode`.
pub fn resolve(policy: DTypePolicy, mode: Bf16Mode) -> PolicyStatus {
    let status = |effective, kernel, reason| PolicyStatus { requested: policy, effective, kernel, reason };
    match (policy, mode) {
        (DTypePolicy::Float32, _) => status(DTypePolicy::Float32, None, "float32 asked for"),
        (DTypePolicy::MixedBfloat16, Bf16Mode::Off) => {
            status(DTypePolicy::Float32, None, "bf16 turned off (MODELC_BF16=off or Bf16Mode::Off): float32")
        }
        (DTypePolicy::MixedBfloat16, Bf16Mode::Emulate) => {
            status(DTypePolicy::MixedBfloat16, Some(Bf16Kernel::Emulated), "portable bf16 emulation asked for (slower than float32)")
        }
        (DTypePolicy::MixedBfloat16, Bf16Mode::Auto) if avx512_bf16_available() => {
            status(DTypePolicy::MixedBfloat16, Some(Bf16Kernel::Avx512Bf16), "bf16 products on AVX512_BF16")
        }
        (DTypePolicy::MixedBfloat16, Bf16Mode::Auto) => status(
            DTypePolicy::Float32,
            None,
            "this CPU has no AVX512_BF16 (and modelc has no AMX kernel yet): float32, which is faster than emulated bf16",
        ),
    }
}

/// Sets `model`'s dtype policy, settled on this CPU with `MODELC_BF16`'s mode; returns the status.
pub fn set_dtype_policy<N: Network>(model: &mut N, policy: DTypePolicy) -> PolicyStatus {
    set_dtype_policy_with(model, policy, Bf16Mode::from_env())
}

/// [`set_dtype_policy`] with the kernel mode given instead of read from `MODELC_BF16`.
pub fn set_dtype_policy_with<N: Network>(model: &mut N, policy: DTypePolicy, mode: Bf16Mode) -> PolicyStatus {
    let status = resolve(policy, mode);
    model.state_mut().dtype_policy = status;
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_keras_spells_them() {
        assert_eq!("mixed_bfloat16".parse::<DTypePolicy>().ok(), Some(DTypePolicy::MixedBfloat16));
        assert_eq!("float32".parse::<DTypePolicy>().ok(), Some(DTypePolicy::Float32));
        let err = "mixed_float16".parse::<DTypePolicy>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("mixed_bfloat16"), "{err}");
        assert_eq!(DTypePolicy::MixedBfloat16.to_string(), "mixed_bfloat16");
    }

    #[test]
    fn the_environment_variable_forces_the_fallback_or_the_emulation() {
        for v in ["off", " OFF", "0", "false", "no", "float32"] {
            assert_eq!(Bf16Mode::parse(v), Bf16Mode::Off, "{v}");
        }
        assert_eq!(Bf16Mode::parse("emulate"), Bf16Mode::Emulate);
        assert_eq!(Bf16Mode::parse("auto"), Bf16Mode::Auto);
        assert_eq!(Bf16Mode::parse(""), Bf16Mode::Auto);
    }

    #[test]
    fn the_fallback_states_its_reason() {
        let off = resolve(DTypePolicy::MixedBfloat16, Bf16Mode::Off);
        assert_eq!((off.effective, off.kernel, off.is_effective()), (DTypePolicy::Float32, None, false));
        assert!(off.reason.contains("off"));
        let emu = resolve(DTypePolicy::MixedBfloat16, Bf16Mode::Emulate);
        assert_eq!((emu.effective, emu.kernel), (DTypePolicy::MixedBfloat16, Some(Bf16Kernel::Emulated)));
        let auto = resolve(DTypePolicy::MixedBfloat16, Bf16Mode::Auto);
        match avx512_bf16_available() {
            true => assert_eq!(auto.kernel, Some(Bf16Kernel::Avx512Bf16)),
            false => assert!(auto.kernel.is_none() && auto.reason.contains("AVX512_BF16")),
        }
        assert_eq!(resolve(DTypePolicy::Float32, Bf16Mode::Emulate).kernel, None);
    }
}
