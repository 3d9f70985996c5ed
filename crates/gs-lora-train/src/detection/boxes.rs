//! Box formats and overlaps: `(cx, cy, w, h)` as the model predicts them, `(x0, y0, x1, y1)`
//! corners for overlaps.

/// A box as `[cx, cy, w, h]` (normalised or in pixels).
pub type CxCyWh = [f64; 4];
/// A box as corners `[x0, y0, x1, y1]`.
pub type Corners = [f64; 4];

/// `[cx, cy, w, h]` → `[x0, y0, x1, y1]`.
pub fn corners([cx, cy, w, h]: CxCyWh) -> Corners {
    [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h]
}

fn area([x0, y0, x1, y1]: Corners) -> f64 {
    (x1 - x0).max(0.0) * (y1 - y0).max(0.0)
}

/// `(intersection, union)` of two boxes.
fn overlap(a: Corners, b: Corners) -> (f64, f64) {
    let inter = area([
        a[0].max(b[0]),
        a[1].max(b[1]),
        a[2].min(b[2]),
        a[3].min(b[3]),
    ]);
    (inter, area(a) + area(b) - inter)
}

/// Intersection over union (0 for two empty boxes).
pub fn iou(a: Corners, b: Corners) -> f64 {
    let (inter, union) = overlap(a, b);
    if union > 0.0 { inter / union } else { 0.0 }
}

/// The share of `detection` inside `region`: intersection over the detection's area, COCO's
/// overlap with a crowd region (0 for an empty detection).
pub fn share_inside(detection: Corners, region: Corners) -> f64 {
    let (inter, _) = overlap(detection, region);
    let own = area(detection);
    if own > 0.0 { inter / own } else { 0.0 }
}

/// Generalised IoU (Rezatofighi et al. 2019): `IoU − (|C| − |A ∪ B|) / |C|`, `C` the smallest
/// box enclosing both; in `[−1, 1]`.
pub fn generalized_iou(a: Corners, b: Corners) -> f64 {
    let (inter, union) = overlap(a, b);
    let hull = area([
        a[0].min(b[0]),
        a[1].min(b[1]),
        a[2].max(b[2]),
        a[3].max(b[3]),
    ]);
    let iou = if union > 0.0 { inter / union } else { 0.0 };
    if hull > 0.0 {
        iou - (hull - union) / hull
    } else {
        iou
    }
}
