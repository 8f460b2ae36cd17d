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
    /// Runs `backward` on `grads`, then replaces `grads` on every rank by the element-wise sum over the
    /// ranks of `scale` times it: the values scaling then [`sum_f32`](Self::sum_f32) give (the same bits
    /// on 2 ranks; on more, the reduction may associate the ranks' values in another order). `backward`
    /// calls its second argument with each range of `grads` it has finished (the slice and its offset;
    /// disjoint ranges, in the same order on every rank), and the sum of those may start while it runs,
    /// in messages of about `bucket` floats (PyTorch DDP's buckets); what no call reported is summed
    /// after it. May swap `grads` with a buffer of its own of the same length.
    fn sum_f32_overlapped(&mut self, grads: &mut Vec<f32>, scale: f32, bucket: usize, backward: &mut Backward<'_>);
}

/// A backward pass [`Collective::sum_f32_overlapped`] runs: it writes the gradients into its first
/// argument and reports each finished range to its second (`ready(&grads[range], range.start)`).
pub(crate) type Backward<'a> = dyn FnMut(&mut [f32], &mut dyn FnMut(&[f32], usize)) + 'a;

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
    fn sum_f32_overlapped(&mut self, grads: &mut Vec<f32>, scale: f32, _: usize, backward: &mut Backward<'_>) {
        backward(grads, &mut |_, _| {});
        grads.iter_mut().for_each(|g| *g *= scale);
    }
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
    use super::{Backward, Collective};
    use crate::error::{Error, Result};
    use crate::kernels::gemm;
    use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
    use mpi::datatype::Equivalence;
    use mpi::ffi::MPI_Request;
    use mpi::raw::AsRaw;
    use mpi::topology::{Communicator, SimpleCommunicator};
    use std::mem::MaybeUninit;
    use std::os::raw::c_int;

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
        /// Initializes MPI (a program run without `mpirun` is one process of rank 0), and makes every
        /// rank run its matrix products with rank 0's kernels and block sizes, so that the ranks round
        /// alike (see `share_gemm_choice`). An error when MPI was already initialized, or on every rank
        /// when a rank already ran a product with other kernels (create `Mpi` first thing in `main`).
        pub fn init() -> Result<Mpi> {
            let mpi = match mpi::initialize() {
                Some(universe) => Mpi { _universe: universe },
                None => return Err(Error::Distributed { message: "MPI is already initialized; create `Mpi` once".into() }),
            };
            share_gemm_choice()?;
            Ok(mpi)
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

    /// Makes every rank run the GEMM with rank 0's kernels and block sizes (a collective, run by
    /// [`Mpi::init`] before any product): the instruction sets round differently, so ranks that
    /// chose apart (a mixed cluster, or a timing probe on a core CPUID does not name) would compute
    /// the same step differently. Capped at the best instruction set every rank has.
    fn share_gemm_choice() -> Result<()> {
        let world = SimpleCommunicator::world();
        if world.size() < 2 {
            return Ok(());
        }
        let mut cap = 0u64;
        world.all_reduce_into(&gemm::best_isa_code(), &mut cap, SystemOperation::min());
        let mut words = if world.rank() == 0 { gemm::choice_words(cap) } else { [0; gemm::CHOICE_WORDS] };
        world.process_at_rank(0).broadcast_into(&mut words[..]);
        let adopted = gemm::adopt_choice(&words);
        // Every rank learns whether all adopted it, so that all return the same result.
        let mut failed = 0u64;
        world.all_reduce_into(&u64::from(adopted.is_err()), &mut failed, SystemOperation::sum());
        match (adopted, failed) {
            (_, 0) => Ok(()),
            (Err(message), _) => Err(Error::Distributed { message: format!("rank {}: {message}", world.rank()) }),
            (Ok(()), n) => Err(Error::Distributed { message: format!("{n} other rank(s) could not take rank 0's GEMM kernels") }),
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
        /// The overlapped sum's send buffer, its requests and the ranges they sum (kept between steps
        /// for their capacity: no allocation after the first step).
        send: Vec<f32>,
        requests: Requests,
        runs: Vec<(usize, usize)>,
    }

    /// The outstanding requests of an overlapped sum. Empty whenever no call of [`World`] runs (every
    /// call waits for its requests before it returns), so that moving it to another thread moves no live
    /// request.
    #[derive(Default)]
    struct Requests(Vec<MPI_Request>);

    // SAFETY: an `MPI_Request` is a handle (a pointer in OpenMPI) that the vector holds only within one
    // `sum_f32_overlapped` call, on the calling thread; between calls the vector is empty.
    unsafe impl Send for Requests {}

    impl World {
        /// The world when MPI is initialized (and not finalized) and holds more than one process.
        pub(super) fn current() -> Option<World> {
            if !mpi::environment::is_initialized() || mpi::environment::is_finalized() {
                return None;
            }
            let world = SimpleCommunicator::world();
            let (rank, size) = (usize::try_from(world.rank()).ok()?, usize::try_from(world.size()).ok()?);
            (size > 1).then(|| World {
                rank,
                size,
                scratch: Vec::new(),
                scratch64: Vec::new(),
                send: Vec::new(),
                requests: Requests::default(),
                runs: Vec::new(),
            })
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
        fn sum_f32_overlapped(&mut self, grads: &mut Vec<f32>, scale: f32, bucket: usize, backward: &mut Backward<'_>) {
            let n = grads.len();
            self.send.resize(n, 0.0);
            self.scratch.resize(n, 0.0);
            self.runs.clear();
            {
                let mut flight = Inflight {
                    send: &mut self.send,
                    recv: &mut self.scratch,
                    requests: &mut self.requests.0,
                    runs: &mut self.runs,
                    open: None,
                    scale,
                    bucket: bucket.max(1),
                };
                backward(grads, &mut |slice, offset| flight.ready(slice, offset));
                flight.close();
                flight.send_rest(grads);
                flight.wait_all();
            }
            std::mem::swap(grads, &mut self.scratch);
        }
    }

    /// The sum of one backward pass' gradients in flight: the scaled values go into `send` range by
    /// range as backward reports them; adjacent ranges join the open run, and a run of `bucket` floats
    /// or more (or one that the next range does not continue) starts its `MPI_Iallreduce` into the same
    /// range of `recv`. Each report tests the outstanding requests, which is when OpenMPI progresses
    /// them (it has no progress thread by default).
    ///
    /// Soundness: between the start of a run's request and its completion MPI reads that range of
    /// `send` and writes that range of `recv`. Nothing here writes a range of `send` a run already
    /// covers (reports overlapping one are ignored), nor touches `recv`, and the buffers stay borrowed
    /// until every request has completed: [`wait_all`](Self::wait_all) runs before the borrows end,
    /// also when backward unwinds (`Drop`). An `Inflight` is never forgotten (`mem::forget`).
    struct Inflight<'a> {
        send: &'a mut [f32],
        recv: &'a mut [f32],
        requests: &'a mut Vec<MPI_Request>,
        /// The ranges `(start, end)` whose requests have started.
        runs: &'a mut Vec<(usize, usize)>,
        /// Reported, copied into `send`, not started yet.
        open: Option<(usize, usize)>,
        scale: f32,
        bucket: usize,
    }

    impl Inflight<'_> {
        /// Backward finished `slice`, the gradients at `offset..`.
        fn ready(&mut self, slice: &[f32], offset: usize) {
            let end = offset + slice.len();
            let taken = |&(a, b): &(usize, usize)| a < end && offset < b;
            if slice.is_empty() || end > self.send.len() || self.runs.iter().any(taken) || self.open.as_ref().is_some_and(taken) {
                return;
            }
            for (s, g) in self.send[offset..end].iter_mut().zip(slice) {
                *s = g * self.scale;
            }
            self.open = match self.open.take() {
                Some((a, b)) if b == offset => Some((a, end)),
                Some((a, b)) if end == a => Some((offset, b)),
                Some(run) => {
                    self.start(run);
                    Some((offset, end))
                }
                None => Some((offset, end)),
            };
            if let Some((a, b)) = self.open.filter(|&(a, b)| b - a >= self.bucket) {
                self.open = None;
                self.start((a, b));
            }
            self.test();
        }

        /// Starts the open run.
        fn close(&mut self) {
            if let Some(run) = self.open.take() {
                self.start(run);
            }
        }

        /// Starts the ranges no report covered (layers without a backward, frozen ones, a network
        /// without hooks), scaled from `grads`, in the order of the buffer (the same on every rank).
        fn send_rest(&mut self, grads: &[f32]) {
            self.runs.sort_unstable();
            let (mut at, started) = (0, self.runs.len());
            for i in 0..=started {
                // The started runs in order, then the end of the buffer (the gaps started here go after them).
                let run = if i < started { self.runs[i] } else { (self.send.len(), self.send.len()) };
                if run.0 > at {
                    for (s, g) in self.send[at..run.0].iter_mut().zip(&grads[at..run.0]) {
                        *s = g * self.scale;
                    }
                    self.start((at, run.0));
                }
                at = at.max(run.1);
            }
        }

        /// Starts the sum of `send[a..b]` into `recv[a..b]` (in pieces that a C `int` counts).
        fn start(&mut self, (a, b): (usize, usize)) {
            self.runs.push((a, b));
            let world = SimpleCommunicator::world();
            let mut at = a;
            while at < b {
                let len = (b - at).min(c_int::MAX as usize);
                let mut request = MaybeUninit::<MPI_Request>::uninit();
                // SAFETY: `at..at + len` lies within both buffers (`b <= send.len() == recv.len()`) and
                // within no other started range; see the type's docs for why they outlive the request.
                unsafe {
                    mpi::ffi::MPI_Iallreduce(
                        self.send.as_ptr().add(at).cast(),
                        self.recv.as_mut_ptr().add(at).cast(),
                        len as c_int,
                        f32::equivalent_datatype().as_raw(),
                        SystemOperation::sum().as_raw(),
                        world.as_raw(),
                        request.as_mut_ptr(),
                    );
                    self.requests.push(request.assume_init());
                }
                at += len;
            }
        }

        /// Lets MPI progress the outstanding requests.
        fn test(&mut self) {
            if self.requests.is_empty() {
                return;
            }
            let mut done: c_int = 0;
            // SAFETY: the requests are live or null (completed ones are set to null by MPI).
            unsafe {
                mpi::ffi::MPI_Testall(self.requests.len() as c_int, self.requests.as_mut_ptr(), &mut done, mpi::ffi::RSMPI_STATUSES_IGNORE);
            }
            if done != 0 {
                self.requests.clear();
            }
        }

        /// Waits until every request has completed.
        fn wait_all(&mut self) {
            if self.requests.is_empty() {
                return;
            }
            // SAFETY: as in `test`.
            unsafe {
                mpi::ffi::MPI_Waitall(self.requests.len() as c_int, self.requests.as_mut_ptr(), mpi::ffi::RSMPI_STATUSES_IGNORE);
            }
            self.requests.clear();
        }
    }

    impl Drop for Inflight<'_> {
        /// Normally a no-op (the sum waited); when backward unwinds, the started requests must still
        /// complete before their buffers may be touched again.
        fn drop(&mut self) {
            self.wait_all();
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
