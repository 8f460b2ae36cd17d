//! Data-parallel training across processes (feature `mpi`): the collectives [`Trainer::fit`] calls.
//!
//! Under `mpirun -n N`, after `Mpi::init()` (feature `mpi`), `fit` trains data-parallel: rank 0's weights and
//! optimizer state are broadcast, every rank walks the same global order of rows (the shared seed)
//! and takes its share of each global batch of `batch_size` rows, the gradients are summed over the
//! ranks in the flat gradient buffer (each rank's scaled by its share of the batch, so the step is the
//! one a single process takes with the whole batch), and the losses and metric states are summed, so
//! every rank logs and decides the same. Only rank 0 prints and runs the callbacks that write files.
//!
//! The training loop sees only a small internal `Collective` trait (broadcast, sum, rank, size): one
//! process is `Local` (no communication at all), several are the MPI world. Without the feature only
//! `Local` exists, and nothing of MPI is built.
//!
//! [`Trainer::fit`]: crate::train::Trainer::fit

use crate::callbacks::CallbackState;
use crate::checkpoint::CallbackStates;
use crate::error::Error;

/// The collective operations the training loop calls, at a few fixed points: the start of `fit`
/// (broadcasts), each step (one sum of the gradients and one of a flag), and the logs (one sum of
/// the running states). Every rank calls them in the same order.
pub(crate) trait Collective: Send {
    /// This process' rank, `0..size`.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank by rank 0's.
    fn broadcast_f32(&mut self, buf: &mut [f32]);
    /// Replaces `buf` on every rank by rank 0's.
    fn broadcast_f64(&mut self, buf: &mut [f64]);
    /// Replaces `buf` on every rank by rank 0's.
    fn broadcast_u8(&mut self, buf: &mut [u8]);
    /// Replaces `buf` on every rank by the element-wise sum over the ranks (the same bits on every
    /// rank). May swap `buf` with a buffer of its own of the same length.
    fn sum_f32(&mut self, buf: &mut Vec<f32>);
    /// Replaces `buf` on every rank by the element-wise sum over the ranks.
    fn sum_f64(&mut self, buf: &mut [f64]);
}

/// One process: every collective is the identity.
#[derive(Debug, Default)]
pub(crate) struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn broadcast_f32(&mut self, _: &mut [f32]) {}
    fn broadcast_f64(&mut self, _: &mut [f64]) {}
    fn broadcast_u8(&mut self, _: &mut [u8]) {}
    fn sum_f32(&mut self, _: &mut Vec<f32>) {}
    fn sum_f64(&mut self, _: &mut [f64]) {}
}

/// The collective `fit` uses: the MPI world when MPI is initialized ([`Mpi::init`]) with more than one
/// process, else [`Local`].
pub(crate) fn current() -> Box<dyn Collective> {
    #[cfg(feature = "mpi")]
    if let Some(world) = mpi_impl::World::current() {
        return Box::new(world);
    }
    Box::new(Local)
}

/// The range of `len` rows (one global batch) that rank `rank` of `size` takes: contiguous shares
/// differing by at most one row, the later ranks taking the larger ones.
pub(crate) fn shard(len: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let size = size.max(1);
    (rank * len / size)..((rank + 1) * len / size)
}

/// Replaces `states` on every rank by rank 0's (the callbacks' states of the checkpoint rank 0 loaded):
/// their length, then their bytes ([`encode_states`]).
pub(crate) fn broadcast_callback_states(c: &mut dyn Collective, states: &mut CallbackStates) {
    let mut bytes = encode_states(states);
    let mut len = [bytes.len() as f64];
    c.broadcast_f64(&mut len);
    bytes.resize(len[0] as usize, 0);
    c.broadcast_u8(&mut bytes);
    if c.rank() != 0 {
        *states = decode_states(&bytes);
    }
}

/// `states` as bytes: per state its position, kind, values (name, `f64` bits) and arrays (name, `f32`s),
/// every length and number little-endian.
fn encode_states(states: &CallbackStates) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(states.len() as u64).to_le_bytes());
    for (i, st) in states {
        out.extend_from_slice(&(*i as u64).to_le_bytes());
        text(&mut out, &st.kind);
        out.extend_from_slice(&(st.values.len() as u64).to_le_bytes());
        for (k, v) in &st.values {
            text(&mut out, k);
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(st.arrays.len() as u64).to_le_bytes());
        for (k, v) in &st.arrays {
            text(&mut out, k);
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
    }
    out
}

/// The states [`encode_states`] wrote (what it cannot read ends the list: the bytes come from rank 0's
/// encoder, never from a user).
fn decode_states(bytes: &[u8]) -> CallbackStates {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (head, rest) = self.0.split_first_chunk::<N>()?;
            self.0 = rest;
            Some(*head)
        }
        fn len(&mut self) -> Option<usize> {
            self.take::<8>().map(|b| u64::from_le_bytes(b) as usize)
        }
        fn text(&mut self) -> Option<String> {
            let n = self.len()?;
            let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
            self.0 = rest;
            Some(String::from_utf8_lossy(head).into_owned())
        }
    }
    let mut r = Reader(bytes);
    let mut read = || -> Option<CallbackStates> {
        let mut states = Vec::new();
        for _ in 0..r.len()? {
            let i = r.len()?;
            let mut st = CallbackState::new(r.text()?);
            for _ in 0..r.len()? {
                let k = r.text()?;
                st.values.insert(k, f64::from_le_bytes(r.take::<8>()?));
            }
            for _ in 0..r.len()? {
                let k = r.text()?;
                let n = r.len()?;
                let v = (0..n).map(|_| r.take::<4>().map(f32::from_le_bytes)).collect::<Option<Vec<f32>>>()?;
                st.arrays.insert(k, v);
            }
            states.push((i, st));
        }
        Some(states)
    };
    read().unwrap_or_default()
}

/// The error every rank but the failing ones returns when another rank stopped training on an error.
pub(crate) fn peer_failed(ranks: usize) -> Error {
    Error::Distributed {
        message: format!(
            "{ranks} other rank(s) stopped training on an error (see their output); this rank stopped too, \
             rather than wait for them"
        ),
    }
}

#[cfg(feature = "mpi")]
pub use mpi_impl::Mpi;

#[cfg(feature = "mpi")]
mod mpi_impl {
    use super::Collective;
    use crate::error::{Error, Result};
    use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
    use mpi::topology::{Communicator, SimpleCommunicator};

    /// The MPI environment of a data-parallel program: create it once at the start of `main`
    /// (`MPI_Init`), keep it alive while training, drop it at the end (`MPI_Finalize`). While it lives,
    /// [`Trainer::fit`](crate::train::Trainer::fit) trains data-parallel over every process `mpirun`
    /// started.
    ///
    /// If a rank dies (a crash, a kill, an exit without finalizing), `mpirun` ends the others and
    /// names the rank (OpenMPI's default, `MPI_ERRORS_ARE_FATAL`): none waits forever.
    pub struct Mpi {
        _universe: mpi::environment::Universe,
    }

    impl std::fmt::Debug for Mpi {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Mpi").field("rank", &self.rank()).field("size", &self.size()).finish()
        }
    }

    impl Mpi {
        /// Initializes MPI (a program run without `mpirun` is one process of rank 0). An error when MPI
        /// was already initialized.
        pub fn init() -> Result<Mpi> {
            match mpi::initialize() {
                Some(universe) => Ok(Mpi { _universe: universe }),
                None => Err(Error::Distributed { message: "MPI is already initialized; create `Mpi` once".into() }),
            }
        }

        /// The whole `main` of a data-parallel program: initializes MPI, runs `program`, and turns its
        /// error into the exit status. An error on one rank alone would leave the others waiting in
        /// their next collective, so with several processes it ends the whole job
        /// ([`abort`](Self::abort)), naming the rank and the error.
        ///
        /// ```no_run
        /// fn main() -> std::process::ExitCode {
        ///     modelc::distributed::Mpi::run(|mpi| {
        ///         println!("rank {} of {}", mpi.rank(), mpi.size());
        ///         Ok(())
        ///     })
        /// }
        /// ```
        pub fn run(program: impl FnOnce(&Mpi) -> std::result::Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
            let mpi = match Mpi::init() {
                Ok(mpi) => mpi,
                Err(e) => {
                    eprintln!("error: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            match program(&mpi) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) if mpi.size() > 1 => mpi.abort(1, &format!("error: {e}")),
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }

        /// This process' rank, `0..size()`.
        pub fn rank(&self) -> usize {
            usize::try_from(SimpleCommunicator::world().rank()).unwrap_or(0)
        }

        /// Number of processes.
        pub fn size(&self) -> usize {
            usize::try_from(SimpleCommunicator::world().size()).unwrap_or(1)
        }

        /// Whether this is rank 0, the one that prints and writes files.
        pub fn is_root(&self) -> bool {
            self.rank() == 0
        }

        /// Whether `values` (the parameters, say) hold the same bits on every rank: each rank compares
        /// rank 0's copy with its own, and every rank learns whether all agreed. Collective: every rank
        /// must call it.
        pub fn same_on_every_rank(&self, values: &[f32]) -> bool {
            let world = SimpleCommunicator::world();
            let mut root = values.to_vec();
            world.process_at_rank(0).broadcast_into(&mut root[..]);
            let differ = u64::from(root.iter().zip(values).any(|(a, b)| a.to_bits() != b.to_bits()));
            let mut any = 0u64;
            world.all_reduce_into(&differ, &mut any, SystemOperation::sum());
            any == 0
        }

        /// Replaces `values` on every rank by their element-wise sum over the ranks (`MPI_Allreduce`), the
        /// same bits on every rank: what `fit` does with the gradients, for a loop of your own
        /// ([`Trainer::compute_gradients`](crate::train::Trainer::compute_gradients), then this, then
        /// [`Trainer::apply_gradients`](crate::train::Trainer::apply_gradients)). Collective.
        pub fn sum(&self, values: &mut [f32]) {
            let sent = values.to_vec();
            SimpleCommunicator::world().all_reduce_into(&sent[..], values, SystemOperation::sum());
        }

        /// Waits until every rank has called it (`MPI_Barrier`). Collective.
        pub fn barrier(&self) {
            SimpleCommunicator::world().barrier();
        }

        /// Ends every process of the job with exit code `code` (`MPI_Abort`), after printing `message`
        /// with this rank: what a rank does on an error the others cannot know about.
        pub fn abort(&self, code: i32, message: &str) -> ! {
            eprintln!("rank {}: {message}", self.rank());
            SimpleCommunicator::world().abort(code)
        }
    }

    /// The MPI world as a [`Collective`], with the receive buffer of the gradient sum. It holds no
    /// communicator handle (those are not `Send`), so that a trainer stays `Send`: it names the world
    /// communicator at each call.
    pub(super) struct World {
        rank: usize,
        size: usize,
        scratch: Vec<f32>,
        scratch64: Vec<f64>,
    }

    impl World {
        /// The world when MPI is initialized (and not finalized) and holds more than one process.
        pub(super) fn current() -> Option<World> {
            if !mpi::environment::is_initialized() || mpi::environment::is_finalized() {
                return None;
            }
            let world = SimpleCommunicator::world();
            let (rank, size) = (usize::try_from(world.rank()).ok()?, usize::try_from(world.size()).ok()?);
            (size > 1).then(|| World { rank, size, scratch: Vec::new(), scratch64: Vec::new() })
        }
    }

    impl Collective for World {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn broadcast_f32(&mut self, buf: &mut [f32]) {
            SimpleCommunicator::world().process_at_rank(0).broadcast_into(buf);
        }
        fn broadcast_f64(&mut self, buf: &mut [f64]) {
            SimpleCommunicator::world().process_at_rank(0).broadcast_into(buf);
        }
        fn broadcast_u8(&mut self, buf: &mut [u8]) {
            SimpleCommunicator::world().process_at_rank(0).broadcast_into(buf);
        }
        fn sum_f32(&mut self, buf: &mut Vec<f32>) {
            // Into the scratch buffer, then swapped in: no copy, and no allocation after the first step.
            self.scratch.resize(buf.len(), 0.0);
            SimpleCommunicator::world().all_reduce_into(&buf[..], &mut self.scratch[..], SystemOperation::sum());
            std::mem::swap(buf, &mut self.scratch);
        }
        fn sum_f64(&mut self, buf: &mut [f64]) {
            self.scratch64.clear();
            self.scratch64.resize(buf.len(), 0.0);
            SimpleCommunicator::world().all_reduce_into(&buf[..], &mut self.scratch64[..], SystemOperation::sum());
            buf.copy_from_slice(&self.scratch64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_a_batch_once_and_differ_by_at_most_one_row() {
        for len in [0usize, 1, 2, 5, 7, 32, 33] {
            for size in 1..=5 {
                let shards: Vec<_> = (0..size).map(|r| shard(len, r, size)).collect();
                assert_eq!(shards[0].start, 0);
                assert_eq!(shards[size - 1].end, len);
                for w in shards.windows(2) {
                    assert_eq!(w[0].end, w[1].start, "len {len}, size {size}");
                }
                let (min, max) = (shards.iter().map(|s| s.len()).min(), shards.iter().map(|s| s.len()).max());
                assert!(max.unwrap_or(0) - min.unwrap_or(0) <= 1, "len {len}, size {size}: {shards:?}");
            }
        }
    }

    #[test]
    fn callback_states_encode_and_decode_exactly() {
        let states: CallbackStates = vec![
            (
                1,
                CallbackState::new("EarlyStopping")
                    .with("wait", 2.0)
                    .with("best", 0.1f64.sqrt())
                    .with_array("best_weights", Some(&[1.5, -0.25])),
            ),
            (3, CallbackState::new("ReduceLROnPlateau").with("best", f64::INFINITY)),
        ];
        assert_eq!(decode_states(&encode_states(&states)), states);
        assert_eq!(decode_states(&encode_states(&Vec::new())), Vec::new());
    }

    #[test]
    fn a_trainer_stays_send() {
        fn send<T: Send>() {}
        send::<Box<dyn Collective>>();
    }

    #[test]
    fn one_process_is_local() {
        let mut c = current();
        assert_eq!((c.rank(), c.size()), (0, 1));
        let mut v = vec![1.0f32, 2.0];
        c.sum_f32(&mut v);
        assert_eq!(v, [1.0, 2.0]);
    }
}
