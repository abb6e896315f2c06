//! Compressed sparse rows of `u32` ids: baskets -> items and its transpose, items -> baskets.
//!
//! Pure data structure code: knows nothing of files, keys or similarity.

use rayon::prelude::*;

/// A zeroed vector whose pages the kernel is asked to back with huge pages (on Linux with
/// transparent huge pages in `madvise` mode). The kernel reads these arrays at random:
/// with 4 KiB pages nearly every access would also miss the TLB.
pub fn zeroed_huge<T: Copy + Default>(len: usize) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    #[cfg(target_os = "linux")]
    {
        let bytes = len * std::mem::size_of::<T>();
        let page = 4096usize;
        let start = v.as_ptr() as usize;
        let aligned = start.next_multiple_of(page);
        if bytes >= 4 << 20 && aligned < start + bytes {
            // SAFETY: the range lies inside this vector's own allocation; madvise is advisory
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
    v.resize(len, T::default());
    v
}

/// Rows of sorted, distinct `u32` values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Csr {
    /// Row `r` is `values[offsets[r]..offsets[r + 1]]`.
    pub offsets: Vec<u64>,
    pub values: Vec<u32>,
}

impl Csr {
    pub fn n_rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    #[inline]
    pub fn row(&self, r: usize) -> &[u32] {
        &self.values[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }

    #[inline]
    pub fn row_len(&self, r: usize) -> usize {
        (self.offsets[r + 1] - self.offsets[r]) as usize
    }

    /// Builds `n_rows` rows from `(row, value)` pairs given as chunked columns of equal
    /// shape. Each row ends up sorted with duplicates removed (a book bought twice by one
    /// customer counts once). `keep`, when given, selects which pairs take part.
    pub fn from_pairs(
        n_rows: usize,
        rows: &[Vec<u32>],
        values: &[Vec<u32>],
        keep: Option<&[Vec<bool>]>,
    ) -> Csr {
        let kept = |c: usize, i: usize| keep.is_none_or(|k| k[c][i]);
        let mut counts = zeroed_huge::<u64>(n_rows + 1);
        for (c, chunk) in rows.iter().enumerate() {
            for (i, &r) in chunk.iter().enumerate() {
                if kept(c, i) {
                    counts[r as usize + 1] += 1;
                }
            }
        }
        for r in 0..n_rows {
            counts[r + 1] += counts[r];
        }
        let offsets = counts;
        let mut cursor = offsets[..n_rows].to_vec();
        let mut out = zeroed_huge::<u32>(offsets[n_rows] as usize);
        for (c, (rchunk, vchunk)) in rows.iter().zip(values).enumerate() {
            for (i, (&r, &v)) in rchunk.iter().zip(vchunk).enumerate() {
                if kept(c, i) {
                    let at = &mut cursor[r as usize];
                    out[*at as usize] = v;
                    *at += 1;
                }
            }
        }
        sort_rows(&offsets, &mut out);
        dedup_rows(offsets, out)
    }

    /// The transpose, with `n_cols` rows; each output row is sorted ascending.
    pub fn transpose(&self, n_cols: usize) -> Csr {
        let mut counts = zeroed_huge::<u64>(n_cols + 1);
        for &v in &self.values {
            counts[v as usize + 1] += 1;
        }
        for c in 0..n_cols {
            counts[c + 1] += counts[c];
        }
        let mut cursor = counts[..n_cols].to_vec();
        let mut out = zeroed_huge::<u32>(self.values.len());
        for r in 0..self.n_rows() {
            for &v in self.row(r) {
                let at = &mut cursor[v as usize];
                out[*at as usize] = r as u32;
                *at += 1;
            }
        }
        Csr {
            offsets: counts,
            values: out,
        }
    }
}

fn sort_rows(offsets: &[u64], values: &mut [u32]) {
    let mut slices: Vec<&mut [u32]> = Vec::with_capacity(offsets.len());
    let mut rest = values;
    for w in offsets.windows(2) {
        let (head, tail) = rest.split_at_mut((w[1] - w[0]) as usize);
        slices.push(head);
        rest = tail;
    }
    slices
        .par_iter_mut()
        .with_min_len(4096)
        .for_each(|s| s.sort_unstable());
}

fn dedup_rows(mut offsets: Vec<u64>, mut values: Vec<u32>) -> Csr {
    let mut write = 0usize;
    let mut start = 0usize;
    for r in 0..offsets.len() - 1 {
        let end = offsets[r + 1] as usize;
        let row_start = write;
        for i in start..end {
            let v = values[i];
            if write == row_start || values[write - 1] != v {
                values[write] = v;
                write += 1;
            }
        }
        offsets[r] = row_start as u64;
        start = end;
    }
    let last = offsets.len() - 1;
    offsets[last] = write as u64;
    // No shrink_to_fit: reallocating would give up the huge pages for a few percent of memory.
    values.truncate(write);
    Csr { offsets, values }
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
}
