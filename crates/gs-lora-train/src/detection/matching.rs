//! One-to-one matching of predicted boxes to targets (DETR's Hungarian matcher), with the
//! costs of the Deformable DETR reference: focal-style class cost, L1 box cost, GIoU cost.

use super::boxes::{CxCyWh, corners, generalized_iou};
use crate::error::{Result, TrainError};

/// A ground-truth object of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// Class index.
    pub label: usize,
    /// Box `[cx, cy, w, h]`, normalised to the image.
    pub bbox: CxCyWh,
}

/// The minimum-cost assignment of rows to columns of the `rows × cols` matrix `cost`
/// (row-major), as `scipy.optimize.linear_sum_assignment`: `min(rows, cols)` pairs
/// `(row, column)`, sorted by row.
///
/// Shortest augmenting paths with potentials (Jonker–Volgenant), `O(n² m)` for `n ≤ m`.
///
/// # Errors
/// A cost that is NaN or infinite, or a matrix whose length is not `rows · cols`.
pub fn linear_sum_assignment(
    cost: &[f64],
    rows: usize,
    cols: usize,
) -> Result<Vec<(usize, usize)>> {
    if cost.len() != rows * cols {
        return Err(TrainError::InvalidSetting(format!(
            "cost matrix of {rows} × {cols} needs {} entries, found {}",
            rows * cols,
            cost.len()
        )));
    }
    if let Some(bad) = cost.iter().position(|c| !c.is_finite()) {
        return Err(TrainError::InvalidSetting(format!(
            "cost matrix entry ({}, {}) is {}",
            bad / cols,
            bad % cols,
            cost[bad]
        )));
    }
    // Solve with the shorter side as rows.
    let transposed = rows > cols;
    let (n, m) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let at = |i: usize, j: usize| {
        if transposed {
            cost[j * cols + i]
        } else {
            cost[i * cols + j]
        }
    };

    // 1-based arrays; column 0 is the virtual start of each augmenting path.
    let (mut u, mut v) = (vec![0.0; n + 1], vec![0.0; m + 1]);
    let (mut owner, mut way) = (vec![0usize; m + 1], vec![0usize; m + 1]);
    for i in 1..=n {
        owner[0] = i;
        let mut j0 = 0;
        let mut min_reduced = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = owner[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let reduced = at(i0 - 1, j - 1) - u[i0] - v[j];
                if reduced < min_reduced[j] {
                    min_reduced[j] = reduced;
                    way[j] = j0;
                }
                if min_reduced[j] < delta {
                    delta = min_reduced[j];
                    j1 = j;
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[owner[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_reduced[j] -= delta;
                }
            }
            j0 = j1;
            if owner[j0] == 0 {
                break;
            }
        }
        while j0 != 0 {
            let j1 = way[j0];
            owner[j0] = owner[j1];
            j0 = j1;
        }
    }
    let mut pairs: Vec<(usize, usize)> = (1..=m)
        .filter(|&j| owner[j] != 0)
        .map(|j| match transposed {
            true => (j - 1, owner[j] - 1),
            false => (owner[j] - 1, j - 1),
        })
        .collect();
    pairs.sort_unstable();
    Ok(pairs)
}

/// The matching costs of Deformable DETR (`HungarianMatcher`), with its default weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HungarianMatcher {
    /// Weight of the focal-style class cost (2).
    pub class_weight: f64,
    /// Weight of the L1 distance of `[cx, cy, w, h]` (5).
    pub bbox_weight: f64,
    /// Weight of the negative GIoU (2).
    pub giou_weight: f64,
    /// Focal `α` (0.25).
    pub focal_alpha: f64,
    /// Focal `γ` (2).
    pub focal_gamma: f64,
}

impl Default for HungarianMatcher {
    fn default() -> Self {
        Self {
            class_weight: 2.0,
            bbox_weight: 5.0,
            giou_weight: 2.0,
            focal_alpha: 0.25,
            focal_gamma: 2.0,
        }
    }
}

impl HungarianMatcher {
    /// The `Q × T` cost matrix (row-major) of one image's `Q` predictions (`logits` row-major
    /// `Q × C`, before the sigmoid; `boxes` `[cx, cy, w, h]`) against its `T` targets.
    ///
    /// # Errors
    /// Mismatched lengths, or a target label outside the `C` classes.
    pub fn cost(&self, logits: &[f32], boxes: &[CxCyWh], targets: &[Target]) -> Result<Vec<f64>> {
        let queries = boxes.len();
        if queries == 0 || !logits.len().is_multiple_of(queries) {
            return Err(TrainError::InvalidSetting(format!(
                "{} logits do not split into {queries} queries",
                logits.len()
            )));
        }
        let classes = logits.len() / queries;
        if let Some(bad) = targets.iter().find(|t| t.label >= classes) {
            return Err(TrainError::InvalidSetting(format!(
                "target label {} is outside the model's {classes} classes",
                bad.label
            )));
        }
        let (alpha, gamma) = (self.focal_alpha, self.focal_gamma);
        let mut cost = Vec::with_capacity(queries * targets.len());
        for (q, bbox) in boxes.iter().enumerate() {
            for target in targets {
                let p = 1.0 / (1.0 + (-f64::from(logits[q * classes + target.label])).exp());
                let positive = alpha * (1.0 - p).powf(gamma) * -(p + 1e-8).ln();
                let negative = (1.0 - alpha) * p.powf(gamma) * -(1.0 - p + 1e-8).ln();
                let l1: f64 = bbox
                    .iter()
                    .zip(&target.bbox)
                    .map(|(a, b)| (a - b).abs())
                    .sum();
                let giou = generalized_iou(corners(*bbox), corners(target.bbox));
                cost.push(
                    self.class_weight * (positive - negative) + self.bbox_weight * l1
                        - self.giou_weight * giou,
                );
            }
        }
        Ok(cost)
    }

    /// The `(query, target)` pairs of least total cost for one image.
    ///
    /// # Errors
    /// As [`cost`](Self::cost) and [`linear_sum_assignment`].
    pub fn match_queries(
        &self,
        logits: &[f32],
        boxes: &[CxCyWh],
        targets: &[Target],
    ) -> Result<Vec<(usize, usize)>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let cost = self.cost(logits, boxes, targets)?;
        linear_sum_assignment(&cost, boxes.len(), targets.len())
    }
}
