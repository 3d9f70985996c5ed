//! A safe, bounds-checked entry to the `gemm` crate (the kernels behind Flex's matmul) for
//! products of strided views into larger buffers, which Burn's tensor API reaches only through
//! copies: the heads of a packed `[q | k | v]` projection, for one.
//!
//! `gemm::gemm` takes raw pointers and strides; [`matmul`] takes slices and [`MatrixView`]s,
//! checks that every element of every view lies inside its slice and that the destination view
//! never maps two positions to one element, and runs on the calling thread. With `&mut` for the
//! destination and `&` for the operands, the borrow checker rules out the remaining hazard,
//! overlapping operands and destination. It is the crate's only `unsafe` code.
#![allow(unsafe_code)]

/// A matrix inside a slice: element `(i, j)` at `offset + i·row_stride + j·col_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MatrixView {
    pub(crate) offset: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl MatrixView {
    /// `rows` rows of `cols` consecutive elements, `row_stride` apart, from `offset`.
    pub(crate) fn row_major(offset: usize, rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            offset,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose, over the same elements.
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside a slice of `len` elements.
    fn fits(&self, len: usize) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return self.offset <= len;
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(down, across)| down.checked_add(across))
            .and_then(|extent| extent.checked_add(self.offset));
        last.is_some_and(|last| last < len)
    }

    /// Whether distinct positions are distinct elements: rows (or columns) of consecutive
    /// elements that do not overlap.
    fn is_injective(&self) -> bool {
        let row_major = self.col_stride == 1 && (self.rows <= 1 || self.row_stride >= self.cols);
        let col_major = self.row_stride == 1 && (self.cols <= 1 || self.col_stride >= self.rows);
        row_major || col_major
    }
}

/// `dst = beta·lhs·rhs`, or `dst += beta·lhs·rhs` with `accumulate`, on the calling thread.
///
/// # Panics
/// If a view leaves its slice, the shapes disagree or `dst`'s view is not injective: all set
/// by the fused ops from shapes they have validated, never by user input.
pub(crate) fn matmul(
    (dst, dst_view): (&mut [f32], MatrixView),
    (lhs, lhs_view): (&[f32], MatrixView),
    (rhs, rhs_view): (&[f32], MatrixView),
    beta: f32,
    accumulate: bool,
) {
    let (m, n, k) = (dst_view.rows, dst_view.cols, lhs_view.cols);
    assert!(
        lhs_view.rows == m && rhs_view.rows == k && rhs_view.cols == n,
        "gemm: [{m}×{n}] = [{}×{}]·[{}×{}]",
        lhs_view.rows,
        lhs_view.cols,
        rhs_view.rows,
        rhs_view.cols
    );
    assert!(
        dst_view.fits(dst.len()) && lhs_view.fits(lhs.len()) && rhs_view.fits(rhs.len()),
        "gemm: a view leaves its buffer"
    );
    assert!(
        dst_view.is_injective(),
        "gemm: destination view overlaps itself"
    );
    if m == 0 || n == 0 {
        return;
    }
    let stride = |s: usize| s as isize;
    // SAFETY: every element gemm touches, (i, j) of each view with i < rows and j < cols, lies
    // inside its slice (checked above, strides non-negative); dst is exclusively borrowed and
    // injective, so writes neither alias each other nor the operands; `Parallelism::None`
    // keeps all of it on this thread.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(dst_view.offset),
            stride(dst_view.col_stride),
            stride(dst_view.row_stride),
            accumulate,
            lhs.as_ptr().add(lhs_view.offset),
            stride(lhs_view.col_stride),
            stride(lhs_view.row_stride),
            rhs.as_ptr().add(rhs_view.offset),
            stride(rhs_view.col_stride),
            stride(rhs_view.row_stride),
            1.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lhs·rhs` by the textbook triple loop, on row-major `[m×k]` and `[k×n]`.
    fn reference(lhs: &[f32], rhs: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| lhs[i * k + p] * rhs[p * n + j]).sum();
            }
        }
        out
    }

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| (i as f32 * 0.37 + seed).sin()).collect()
    }

    #[test]
    fn strided_views_multiply_like_the_packed_matrices() {
        let (m, k, n) = (5, 3, 4);
        let (lhs, rhs) = (values(m * k, 0.1), values(k * n, 0.7));
        // lhs stored transposed inside a wider buffer, rhs with padded rows, dst in a gap.
        let mut lhs_t = vec![9.0; 2 + k * (m + 2)];
        for i in 0..m {
            for p in 0..k {
                lhs_t[2 + p * (m + 2) + i] = lhs[i * k + p];
            }
        }
        let mut rhs_padded = vec![9.0; k * (n + 1)];
        for p in 0..k {
            rhs_padded[p * (n + 1)..p * (n + 1) + n].copy_from_slice(&rhs[p * n..p * n + n]);
        }
        let mut dst = vec![1.0; 3 + m * (n + 2)];
        let dst_view = MatrixView::row_major(3, m, n, n + 2);
        matmul(
            (&mut dst, dst_view),
            (&lhs_t, MatrixView::row_major(2, k, m, m + 2).t()),
            (&rhs_padded, MatrixView::row_major(0, k, n, n + 1)),
            0.5,
            true,
        );
        let expected = reference(&lhs, &rhs, m, k, n);
        for i in 0..m {
            for j in 0..n {
                let found = dst[3 + i * (n + 2) + j];
                let want = 1.0 + 0.5 * expected[i * n + j];
                assert!((found - want).abs() < 1e-5, "({i}, {j}): {found} vs {want}");
            }
            // The gap between rows is left alone.
            assert_eq!(dst[3 + i * (n + 2) + n], 1.0);
        }
        assert_eq!(&dst[..3], &[1.0; 3]);
    }

    #[test]
    #[should_panic(expected = "leaves its buffer")]
    fn a_view_past_the_end_is_refused() {
        let mut dst = vec![0.0; 4];
        let a = vec![0.0; 4];
        let view = MatrixView::row_major(1, 2, 2, 2);
        matmul((&mut dst, view), (&a, view), (&a, view), 1.0, false);
    }

    #[test]
    #[should_panic(expected = "overlaps itself")]
    fn an_overlapping_destination_is_refused() {
        let mut dst = vec![0.0; 8];
        let a = vec![0.0; 8];
        let square = MatrixView::row_major(0, 2, 2, 2);
        matmul(
            (&mut dst, MatrixView::row_major(0, 2, 2, 1)),
            (&a, square),
            (&a, square),
            1.0,
            false,
        );
    }
}
