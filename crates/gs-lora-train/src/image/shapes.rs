//! The shapes and colours both generated datasets draw (classification's shape classes,
//! detection's scenes).

/// Shape names; a shape's index selects its outline in [`shape_contains`].
pub(crate) const SHAPES: [&str; 5] = ["circle", "bar", "triangle", "cross", "ring"];
/// Colour names and their RGB values in `[0, 1]`.
pub(crate) const COLOURS: [(&str, [f32; 3]); 4] = [
    ("red", [0.85, 0.15, 0.15]),
    ("green", [0.15, 0.75, 0.2]),
    ("blue", [0.2, 0.3, 0.9]),
    ("yellow", [0.9, 0.85, 0.15]),
];

/// Whether the point `(u, v)` of the object frame (centred, rotated, in units of the radius)
/// lies inside shape `shape` of [`SHAPES`].
pub(crate) fn shape_contains(shape: usize, u: f32, v: f32) -> bool {
    match shape {
        0 => u * u + v * v <= 1.0,
        1 => u.abs() <= 0.95 && v.abs() <= 0.4,
        2 => (-0.6..=0.9).contains(&v) && u.abs() <= (0.9 - v) * 0.6,
        3 => (u.abs() <= 0.3 && v.abs() <= 0.95) || (v.abs() <= 0.3 && u.abs() <= 0.95),
        _ => {
            let r = (u * u + v * v).sqrt();
            (0.55..=1.0).contains(&r)
        }
    }
}
