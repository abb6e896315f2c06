//! Compressed sparse rows of `u32` ids: baskets -> items and its transpose, items -> baskets.
//!
//! Pure data structure code: knows nothing of files, keys or similarity.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use rayon::prelude::*;

/// A zeroed vector whose pages the kernel is asked to back with huge pages (on Linux with
/// transparent huge pages in `madvise` mode). Only for arrays read at random (the packed
/// baskets), where with 4 KiB pages nearly every access would also miss the TLB. Arrays
/// written or read in order do not gain, and pay for it: faulting in huge pages cost
/// 0.1-0.4 s more at size l than 4 KiB pages (bench/RESULTS.md).
pub fn zeroed_huge<T: Copy + Default>(len: usize) -> Vec<T> {
    let mut v = with_capacity_huge(len);
    v.resize(len, T::default());
    v
}

/// An empty vector with room for `len` elements, on huge pages where it is large (as
/// [`zeroed_huge`], for a caller that fills it by extending).
pub fn with_capacity_huge<T>(len: usize) -> Vec<T> {
    let v: Vec<T> = Vec::with_capacity(len);
    advise_huge(v.as_ptr() as usize, len * std::mem::size_of::<T>());
    v
}

/// Asks for huge pages over an untouched allocation of `bytes` bytes at `start`.
fn advise_huge(start: usize, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        let aligned = start.next_multiple_of(4096);
        if bytes >= 4 << 20 && aligned < start + bytes {
            // SAFETY: the range lies inside the caller's own allocation; madvise is advisory
            // and changes no contents (the pages are not touched yet).
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    start + bytes - aligned,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, bytes);
}

/// Rows of sorted, distinct `u32` values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Csr {
    /// Row `r` is `values[offsets[r]..offsets[r + 1]]`.
    pub offsets: Vec<u64>,
    /// Column ids, row by row.
    pub values: Vec<u32>,
}

impl Csr {
    /// Rows.
    pub fn n_rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Sorts every row in place (rows in parallel).
    pub fn sort_rows(&mut self) {
        let mut rows = Vec::with_capacity(self.n_rows());
        let mut rest = self.values.as_mut_slice();
        for w in self.offsets.windows(2) {
            let (row, tail) = rest.split_at_mut((w[1] - w[0]) as usize);
            rows.push(row);
            rest = tail;
        }
        rows.into_par_iter()
            .with_min_len(1024)
            .for_each(|r| r.sort_unstable());
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Row `r`'s column ids.
    #[inline]
    pub fn row(&self, r: usize) -> &[u32] {
        &self.values[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }

    /// Entries in row `r`.
    #[inline]
    pub fn row_len(&self, r: usize) -> usize {
        (self.offsets[r + 1] - self.offsets[r]) as usize
    }

    /// Rows given one by one, each already sorted and distinct (not checked beyond a debug
    /// assertion): for tests and small inputs.
    pub fn from_rows<R: AsRef<[u32]>>(rows: &[R]) -> Csr {
        let mut offsets = Vec::with_capacity(rows.len() + 1);
        offsets.push(0u64);
        let mut values = Vec::new();
        for r in rows {
            let r = r.as_ref();
            debug_assert!(
                r.windows(2).all(|w| w[0] < w[1]),
                "rows are sorted and distinct"
            );
            values.extend_from_slice(r);
            offsets.push(values.len() as u64);
        }
        Csr { offsets, values }
    }

    /// Builds `n_rows` rows from `(row, value)` pairs given as chunked columns of equal
    /// shape. Each row ends up sorted with duplicates removed (a book bought twice by one
    /// customer counts once). `keep`, when given, selects which pairs take part.
    ///
    /// The chunks are split into a few parts of similar size; each part counts its pairs per
    /// row, then scatters them at cursors that start where the previous parts' pairs of that
    /// row end (no atomic read-modify-write). Each row is sorted after, so the result is
    /// deterministic.
    pub fn from_pairs(
        n_rows: usize,
        rows: &[Vec<u32>],
        values: &[Vec<u32>],
        keep: Option<&[Vec<bool>]>,
    ) -> Csr {
        let kept = |c: usize, i: usize| keep.is_none_or(|k| k[c][i]);
        let parts = chunk_parts(rows, rayon::current_num_threads() * 2);
        let mut cursors: Vec<Vec<u32>> = parts
            .par_iter()
            .map(|chunks| {
                let mut c = vec![0u32; n_rows];
                for ci in chunks.clone() {
                    for (i, &r) in rows[ci].iter().enumerate() {
                        c[r as usize] += kept(ci, i) as u32;
                    }
                }
                c
            })
            .collect();
        // Row offsets, and each part's counts turned into its cursor within the row.
        let mut offsets = vec![0u64; n_rows + 1];
        for r in 0..n_rows {
            let mut within = 0u32;
            for c in cursors.iter_mut() {
                let n = c[r];
                c[r] = within;
                within += n;
            }
            offsets[r + 1] = offsets[r] + within as u64;
        }
        let mut grouped = vec![0u32; offsets[n_rows] as usize];
        let out = as_atomic(&mut grouped);
        parts
            .into_par_iter()
            .zip(cursors)
            .for_each(|(chunks, mut cursor)| {
                for ci in chunks {
                    for (i, (&r, &v)) in rows[ci].iter().zip(&values[ci]).enumerate() {
                        if kept(ci, i) {
                            let r = r as usize;
                            let at = offsets[r] + cursor[r] as u64;
                            cursor[r] += 1;
                            out[at as usize].store(v, Relaxed);
                        }
                    }
                }
            });
        sort_dedup_rows(offsets, grouped)
    }

    /// The transpose, with `n_cols` rows; each output row is sorted ascending.
    pub fn transpose(&self, n_cols: usize) -> Csr {
        self.transpose_labelled(n_cols, |r| r as u32)
    }

    /// The transpose where input row `r` appears as `label(r)` (monotone in `r`, so output
    /// rows stay sorted).
    ///
    /// Rows are split into parts of similar size; each part counts its values, then writes
    /// them at cursors that start where the previous parts' entries end, so the parts fill
    /// disjoint slots in row order and every output row comes out sorted.
    pub fn transpose_labelled(&self, n_cols: usize, label: impl Fn(usize) -> u32 + Sync) -> Csr {
        self.transpose_labelled_in(n_cols, 0..n_cols, label)
    }

    /// [`Csr::transpose_labelled`] keeping only the values in `cols`: the output rows
    /// outside `cols` are empty (a rank needs the baskets of its own items only).
    pub fn transpose_labelled_in(
        &self,
        n_cols: usize,
        cols: std::ops::Range<usize>,
        label: impl Fn(usize) -> u32 + Sync,
    ) -> Csr {
        transpose_rows_in(&self.offsets, &self.values, 0, n_cols, cols, label)
    }
}

/// The transpose of the rows `values[offsets[r] + header..offsets[r + 1]]` (a CSR with
/// `header = 0`; packed baskets, each behind `header` words of its own, otherwise), keeping
/// only the values in `cols` and labelling each entry by `label(r)`.
pub fn transpose_rows_in(
    offsets: &[u64],
    values: &[u32],
    header: usize,
    n_cols: usize,
    cols: std::ops::Range<usize>,
    label: impl Fn(usize) -> u32 + Sync,
) -> Csr {
    let keep = |v: u32| cols.contains(&(v as usize));
    let n_rows = offsets.len() - 1;
    let row = |r: usize| &values[offsets[r] as usize + header..offsets[r + 1] as usize];
    let parts = (rayon::current_num_threads() * 2).clamp(1, n_rows.max(1));
    let total = offsets[n_rows];
    // Row boundaries that split the entries evenly; the last part ends at the last row.
    let mut bounds: Vec<usize> = (0..=parts)
        .map(|p| {
            offsets
                .partition_point(|&o| o < total * p as u64 / parts as u64)
                .min(n_rows)
        })
        .collect();
    bounds[parts] = n_rows;
    let mut part_counts: Vec<Vec<u64>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let mut c = vec![0u64; n_cols];
            for r in bounds[p]..bounds[p + 1] {
                for &v in row(r) {
                    c[v as usize] += keep(v) as u64;
                }
            }
            c
        })
        .collect();
    let mut col_offsets = vec![0u64; n_cols + 1];
    for col in 0..n_cols {
        let mut at = col_offsets[col];
        for pc in part_counts.iter_mut() {
            let n = pc[col];
            pc[col] = at; // now this part's cursor for `col`
            at += n;
        }
        col_offsets[col + 1] = at;
    }
    let mut transposed = vec![0u32; col_offsets[n_cols] as usize];
    let out = as_atomic(&mut transposed);
    part_counts
        .into_par_iter()
        .enumerate()
        .for_each(|(p, mut cursor)| {
            for r in bounds[p]..bounds[p + 1] {
                for &v in row(r) {
                    if keep(v) {
                        out[cursor[v as usize] as usize].store(label(r), Relaxed);
                        cursor[v as usize] += 1;
                    }
                }
            }
        });
    Csr {
        offsets: col_offsets,
        values: transposed,
    }
}

/// Splits `chunks` into at most `parts` runs of consecutive chunks holding similar numbers
/// of entries.
fn chunk_parts(chunks: &[Vec<u32>], parts: usize) -> Vec<std::ops::Range<usize>> {
    let total: usize = chunks.iter().map(Vec::len).sum();
    let per = total.div_ceil(parts.max(1)).max(1);
    let mut out = Vec::with_capacity(parts);
    let (mut start, mut filled) = (0, 0);
    for (i, c) in chunks.iter().enumerate() {
        filled += c.len();
        if filled >= per {
            out.push(start..i + 1);
            (start, filled) = (i + 1, 0);
        }
    }
    if start < chunks.len() {
        out.push(start..chunks.len());
    }
    out
}

/// Sorts and de-duplicates every row, then closes the gaps. Rows are handled in blocks of
/// [`BLOCK_ROWS`] in parallel, each block packing its rows to its own start; the blocks are
/// then moved together with one bulk copy each.
fn sort_dedup_rows(mut offsets: Vec<u64>, mut values: Vec<u32>) -> Csr {
    let n_rows = offsets.len() - 1;
    let mut kept = vec![0u32; n_rows];
    let mut blocks: Vec<(&mut [u32], &mut [u32], &[u64])> = Vec::new();
    let mut rest = &mut values[..];
    for (b, lens) in kept.chunks_mut(BLOCK_ROWS).enumerate() {
        // This block's row offsets, its end included.
        let offs = &offsets[b * BLOCK_ROWS..=b * BLOCK_ROWS + lens.len()];
        let (head, tail) = rest.split_at_mut((offs[lens.len()] - offs[0]) as usize);
        blocks.push((lens, head, offs));
        rest = tail;
    }
    let block_kept: Vec<usize> = blocks
        .into_par_iter()
        .map(|(lens, vals, offs)| {
            let base = offs[0];
            let mut w = 0usize;
            for (r, len) in lens.iter_mut().enumerate() {
                let (lo, hi) = ((offs[r] - base) as usize, (offs[r + 1] - base) as usize);
                let row = &mut vals[lo..hi];
                row.sort_unstable();
                let mut n = 0;
                for i in 0..row.len() {
                    if n == 0 || row[n - 1] != row[i] {
                        row[n] = row[i];
                        n += 1;
                    }
                }
                vals.copy_within(lo..lo + n, w);
                w += n;
                *len = n as u32;
            }
            w
        })
        .collect();
    let mut write = 0usize;
    for (b, &n) in block_kept.iter().enumerate() {
        let start = offsets[b * BLOCK_ROWS] as usize;
        values.copy_within(start..start + n, write);
        write += n;
    }
    offsets[0] = 0;
    for r in 0..n_rows {
        offsets[r + 1] = offsets[r] + kept[r] as u64;
    }
    // No shrink_to_fit: reallocating would copy 80 MB at size l for a few percent of memory.
    values.truncate(write);
    Csr { offsets, values }
}

/// Rows per block in [`sort_dedup_rows`].
const BLOCK_ROWS: usize = 4096;

/// `len` zero atomics.
/// `v` as atomics, for threads that each store into their own slots of one array. The
/// array itself comes from `vec![0; n]`, which takes zeroed pages from the system as they
/// are first written (by the threads that write them), rather than zeroing it up front on
/// one thread as building a `Vec<AtomicU32>` element by element does.
fn as_atomic(v: &mut [u32]) -> &[AtomicU32] {
    const _: () = assert!(std::mem::align_of::<AtomicU32>() == std::mem::align_of::<u32>());
    // SAFETY: `AtomicU32` has the size and bit validity of `u32` and (checked above) its
    // alignment; the exclusive borrow of `v` outlives the view, so every access to these
    // slots while it lives goes through the atomics.
    unsafe { std::slice::from_raw_parts(v.as_mut_ptr().cast::<AtomicU32>(), v.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_grouped_sorted_and_deduplicated() {
        let rows = vec![vec![2, 0, 2], vec![0, 2, 1]];
        let vals = vec![vec![5, 3, 1], vec![3, 5, 7]];
        let csr = Csr::from_pairs(4, &rows, &vals, None);
        assert_eq!(csr.n_rows(), 4);
        assert_eq!(csr.row(0), &[3]);
        assert_eq!(csr.row(1), &[7]);
        assert_eq!(csr.row(2), &[1, 5]);
        assert_eq!(csr.row(3), &[] as &[u32]);
        let t = csr.transpose(8);
        assert_eq!(t.row(5), &[2]);
        assert_eq!(t.row(3), &[0]);
        assert_eq!(t.nnz(), csr.nnz());
    }

    #[test]
    fn keep_mask_filters_pairs() {
        let rows = vec![vec![0, 0, 1]];
        let vals = vec![vec![1, 2, 3]];
        let keep = vec![vec![true, false, true]];
        let csr = Csr::from_pairs(2, &rows, &vals, Some(&keep));
        assert_eq!(csr.row(0), &[1]);
        assert_eq!(csr.row(1), &[3]);
    }

    #[test]
    fn many_chunks_and_blocks_match_a_set_per_row() {
        // More rows than one sort block, uneven chunks, duplicates, empty rows, a mask.
        let n_rows = 3 * BLOCK_ROWS + 17;
        let mut x = 0x9e37_79b9_u64;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m) as u32
        };
        let (mut rows, mut vals, mut keep) = (Vec::new(), Vec::new(), Vec::new());
        for len in [0, 1, 5000, 70_000, 3, 20_000] {
            rows.push(
                (0..len)
                    .map(|_| next(n_rows as u64 - 9))
                    .collect::<Vec<_>>(),
            );
            vals.push((0..len).map(|_| next(50)).collect::<Vec<_>>());
            keep.push((0..len).map(|_| next(4) != 0).collect::<Vec<_>>());
        }
        let mut want = vec![std::collections::BTreeSet::new(); n_rows];
        for c in 0..rows.len() {
            for i in 0..rows[c].len() {
                if keep[c][i] {
                    want[rows[c][i] as usize].insert(vals[c][i]);
                }
            }
        }
        let csr = Csr::from_pairs(n_rows, &rows, &vals, Some(&keep));
        assert_eq!(csr.n_rows(), n_rows);
        for (r, set) in want.iter().enumerate() {
            assert_eq!(
                csr.row(r),
                set.iter().copied().collect::<Vec<_>>(),
                "row {r}"
            );
        }
        assert_eq!(csr.nnz(), want.iter().map(|s| s.len()).sum::<usize>());
    }
}
