//! The CUDA counting backend (feature `cuda`): integer co-occurrence counts of item-row tiles
//! on one GPU, top-K selection on the host with the CPU kernel's own [`select_top_k`].
//!
//! The GPU computes only integers (`C_ij` for a tile of rows, as `(j, C_ij)` candidates);
//! scoring in f64 and the selection are the CPU path's code, so the artifact is the CPU
//! path's byte for byte. A tile is `rows x n_items` u32 counters sized to the device's free
//! memory, so a 100,000-item catalogue never needs a dense 100,000 x 100,000 matrix.
//!
//! cudarc loads libcuda and libnvrtc at run time: a build with this feature runs (on the
//! CPU) where neither exists. The kernels (`cooc.cu`) are compiled by NVRTC for the
//! device's architecture on first use and the PTX is cached on disk
//! (`$COOC_KERNEL_CACHE`, else `$XDG_CACHE_HOME/cooc/kernels`, else `~/.cache/cooc/kernels`;
//! a cache that cannot be written is skipped).

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{CompileOptions, Ptx};
use rayon::prelude::*;

use crate::kernel::{select_top_k, CoocIndex, Scorer, Scoring, TopK};

/// The kernels' source, compiled at run time.
const SOURCE: &str = include_str!("cooc.cu");

/// Threads per block of every kernel (a multiple of 32).
const BLOCK: u32 = 256;

/// Why the CUDA backend cannot run.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// libcuda could not be loaded.
    #[error(
        "no CUDA driver: libcuda could not be loaded (is this a GPU node with the NVIDIA runtime?)"
    )]
    NoDriver,
    /// The driver sees no device.
    #[error("no CUDA device is visible (CUDA_VISIBLE_DEVICES, the pod's nvidia.com/gpu limit)")]
    NoDevice,
    /// libnvrtc could not be loaded.
    #[error("no NVRTC: libnvrtc could not be loaded (the image needs the CUDA runtime libraries)")]
    NoNvrtc,
    /// A driver call failed.
    #[error("CUDA: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    /// NVRTC refused the kernels.
    #[error("compiling the kernels for {arch}: {detail}")]
    Compile {
        /// The target architecture, e.g. `sm_90`.
        arch: String,
        /// NVRTC's log.
        detail: String,
    },
}

impl GpuError {
    /// Whether this is the node's setup (exit code 2) rather than a failure while running.
    pub fn is_setup(&self) -> bool {
        matches!(
            self,
            GpuError::NoDriver | GpuError::NoDevice | GpuError::NoNvrtc | GpuError::Compile { .. }
        )
    }
}

/// Whether a CUDA device can be used here: the driver loads and sees at least one device.
pub fn present() -> bool {
    // SAFETY: only tries to dlopen the driver library; no CUDA call is made through it.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    driver && CudaContext::device_count().is_ok_and(|n| n > 0)
}

/// One GPU with the kernels loaded.
pub struct Device {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    count: CudaFunction,
    nonzeros: CudaFunction,
    compact: CudaFunction,
    name: String,
}

impl Device {
    /// Opens device `ordinal` (modulo the visible devices) and loads the kernels.
    pub fn open(ordinal: usize) -> Result<Device, GpuError> {
        // SAFETY: as in `present`: dlopen attempts only.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(GpuError::NoDriver);
        }
        let n = CudaContext::device_count()?;
        if n <= 0 {
            return Err(GpuError::NoDevice);
        }
        let ctx = CudaContext::new(ordinal % n as usize)?;
        let (major, minor) = ctx.compute_capability()?;
        let arch = format!("compute_{major}{minor}");
        let ptx = kernels(&arch)?;
        let module = ctx.load_module(ptx)?;
        let stream = ctx.default_stream();
        Ok(Device {
            name: ctx.name()?,
            count: module.load_function("count_tile")?,
            nonzeros: module.load_function("nonzeros_tile")?,
            compact: module.load_function("compact_tile")?,
            ctx,
            stream,
        })
    }

    /// The device's name, for logs and reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Top-`k` neighbours of the items in `rows`: the same result as
    /// [`CoocIndex::top_k`], counted on this GPU.
    pub fn top_k(
        &self,
        idx: &CoocIndex,
        sim: Scoring,
        k: usize,
        rows: Range<usize>,
    ) -> Result<TopK, GpuError> {
        let n_items = idx.n_items();
        let (packed, item_baskets, degree) = idx.parts();
        let scorer = Scorer::new(sim, degree);
        let s = &self.stream;
        let d_packed = s.clone_htod(packed)?;
        let d_offs = s.clone_htod(&item_baskets.offsets)?;
        let d_pos = s.clone_htod(&item_baskets.values)?;
        let tile = self.tile_rows(n_items, rows.len())?;
        let mut counts = s.alloc_zeros::<u32>(tile * n_items.max(1))?;
        let mut out = TopK::from_lists(Vec::new());
        let mut r0 = rows.start;
        while r0 < rows.end {
            let t = tile.min(rows.end - r0);
            let block = self.tile(
                TileArgs {
                    packed: &d_packed,
                    offs: &d_offs,
                    pos: &d_pos,
                    counts: &mut counts,
                    n_items,
                    entries: item_baskets.offsets[r0 + t] - item_baskets.offsets[r0],
                },
                r0,
                t,
            )?;
            // Scores and selection on the host, the CPU path's code.
            let lists: Vec<Vec<(f64, u32)>> = (0..t)
                .into_par_iter()
                .map_init(std::collections::BinaryHeap::new, |heap, r| {
                    let (a, b) = (block.start[r] as usize, block.start[r + 1] as usize);
                    let cands = block.item[a..b]
                        .iter()
                        .copied()
                        .zip(block.count[a..b].iter().copied());
                    select_top_k(&scorer, k, r0 + r, degree, heap, cands)
                })
                .collect();
            out.append(TopK::from_lists(lists));
            r0 += t;
        }
        Ok(out)
    }

    /// Rows per tile: the counters take at most a quarter of the free memory (and 8 GiB).
    /// `COOC_GPU_TILE_ROWS` caps it (tests use it to cross tile boundaries).
    fn tile_rows(&self, n_items: usize, rows: usize) -> Result<usize, GpuError> {
        if let Some(t) = std::env::var("COOC_GPU_TILE_ROWS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&t| t > 0)
        {
            return Ok(t.min(rows.max(1)));
        }
        let (free, _total) = self.ctx.mem_get_info()?;
        let budget = (free / 4).min(8 << 30);
        let per_row = 4 * n_items.max(1);
        Ok((budget / per_row)
            .clamp(1, rows.max(1))
            .min(u32::MAX as usize))
    }

    /// Counts rows `r0..r0 + t` and brings back their candidates.
    fn tile(&self, a: TileArgs<'_>, r0: usize, t: usize) -> Result<Candidates, GpuError> {
        let s = &self.stream;
        let (rows, r0_u32, n_items) = (t as u32, r0 as u32, a.n_items as u64);
        let offs = a.offs.slice(r0..);
        if a.entries > 0 {
            let grid = a.entries.div_ceil(BLOCK as u64).min(1 << 20) as u32;
            let mut l = s.launch_builder(&self.count);
            l.arg(a.packed)
                .arg(&offs)
                .arg(a.pos)
                .arg(&rows)
                .arg(&n_items)
                .arg(&mut *a.counts);
            // SAFETY: the arguments match `count_tile`'s signature; `offs` holds rows + 1
            // offsets from r0, every position in `pos` is a basket start in `packed`, and
            // `counts` holds at least rows * n_items counters (tile_rows).
            unsafe { l.launch(cfg(grid)) }?;
        }
        let mut nnz = s.alloc_zeros::<u32>(t)?;
        let mut l = s.launch_builder(&self.nonzeros);
        l.arg(&*a.counts).arg(&r0_u32).arg(&n_items).arg(&mut nnz);
        // SAFETY: one block per row of the tile; `nnz` holds one slot per row.
        unsafe { l.launch(cfg(rows)) }?;
        let nnz = s.clone_dtoh(&nnz)?;
        s.synchronize()?;
        let mut start = Vec::with_capacity(t + 1);
        start.push(0u64);
        for &n in &nnz {
            start.push(start.last().copied().unwrap_or(0) + n as u64);
        }
        let total = start[t] as usize;
        let d_start = s.clone_htod(&start)?;
        let mut cursor = s.alloc_zeros::<u32>(t)?;
        let mut item = s.alloc_zeros::<u32>(total.max(1))?;
        let mut count = s.alloc_zeros::<u32>(total.max(1))?;
        let mut l = s.launch_builder(&self.compact);
        l.arg(&mut *a.counts)
            .arg(&r0_u32)
            .arg(&n_items)
            .arg(&d_start)
            .arg(&mut cursor)
            .arg(&mut item)
            .arg(&mut count);
        // SAFETY: one block per row; row r writes exactly nnz[r] candidates at start[r]..
        // (the same predicate as `nonzeros_tile`), inside the `total` slots allocated.
        unsafe { l.launch(cfg(rows)) }?;
        let mut item = s.clone_dtoh(&item)?;
        let mut count = s.clone_dtoh(&count)?;
        s.synchronize()?;
        item.truncate(total);
        count.truncate(total);
        Ok(Candidates { start, item, count })
    }
}

/// What one tile's kernels read and write.
struct TileArgs<'a> {
    packed: &'a cudarc::driver::CudaSlice<u32>,
    offs: &'a cudarc::driver::CudaSlice<u64>,
    pos: &'a cudarc::driver::CudaSlice<u32>,
    counts: &'a mut cudarc::driver::CudaSlice<u32>,
    n_items: usize,
    /// (row, basket) entries of the tile: the count kernel's work items.
    entries: u64,
}

/// A tile's candidates: row `r`'s are `item[start[r]..start[r + 1]]` with their counts.
struct Candidates {
    start: Vec<u64>,
    item: Vec<u32>,
    count: Vec<u32>,
}

fn cfg(grid: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid.max(1), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The kernels' PTX for `arch`: from the disk cache, else compiled by NVRTC (and cached).
fn kernels(arch: &str) -> Result<Ptx, GpuError> {
    let key = format!("cooc-{:08x}-{arch}.ptx", crc32fast::hash(SOURCE.as_bytes()));
    let cached = cache_dir().map(|d| d.join(&key));
    if let Some(src) = cached
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
    {
        tracing::debug!(kernel = %key, "kernels from the cache");
        return Ok(Ptx::from_src(src));
    }
    // SAFETY: only tries to dlopen libnvrtc.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(GpuError::NoNvrtc);
    }
    let opts = CompileOptions {
        // No contraction of a*b+c: the kernels are integer-only today; keep any future f64
        // arithmetic rounding exactly as on the host.
        fmad: Some(false),
        options: vec![format!("--gpu-architecture={arch}")],
        name: Some("cooc.cu".into()),
        ..Default::default()
    };
    let ptx =
        cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts).map_err(|e| GpuError::Compile {
            arch: arch.to_owned(),
            detail: e.to_string(),
        })?;
    if let Some(path) = cached {
        if let Err(e) = write_atomically(&path, ptx.to_src().as_bytes()) {
            tracing::debug!(path = %path.display(), error = %e, "kernel cache not written");
        }
    }
    Ok(ptx)
}

fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("COOC_KERNEL_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("cooc/kernels")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/cooc/kernels")))
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
