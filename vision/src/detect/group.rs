//! OpenCV's `groupRectangles`: candidates that agree within `eps` form a
//! class (`cv::partition`), a class with more than `min_neighbors` members
//! becomes its members' mean, and a mean lying inside a stronger one is
//! dropped.

/// A rectangle in pixels, as OpenCV's `cv::Rect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
}

/// OpenCV's `SimilarRects`: each edge within `eps` times the mean of the
/// smaller width and height.
fn similar(a: &Rect, b: &Rect, eps: f64) -> bool {
    let delta = eps * (a.width.min(b.width) + a.height.min(b.height)) as f64 * 0.5;
    let close = |u: i32, v: i32| ((u - v).abs() as f64) <= delta;
    close(a.x, b.x)
        && close(a.y, b.y)
        && close(a.x + a.width, b.x + b.width)
        && close(a.y + a.height, b.y + b.height)
}

/// Class labels of the transitive closure of [`similar`], numbered in the
/// order of each class's first member (as `cv::partition` numbers them).
fn partition(rects: &[Rect], eps: f64) -> (Vec<usize>, usize) {
    let n = rects.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            if similar(&rects[i], &rects[j], eps) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut label_of_root = vec![usize::MAX; n];
    let mut classes = 0;
    let labels = (0..n)
        .map(|i| {
            let r = root(&mut parent, i);
            if label_of_root[r] == usize::MAX {
                label_of_root[r] = classes;
                classes += 1;
            }
            label_of_root[r]
        })
        .collect();
    (labels, classes)
}

/// `cv::groupRectangles(rects, min_neighbors, eps)`.
pub fn group_rectangles(rects: &[Rect], min_neighbors: i32, eps: f64) -> Vec<Rect> {
    if min_neighbors <= 0 || rects.is_empty() {
        return rects.to_vec();
    }
    let (labels, classes) = partition(rects, eps);
    let mut sums = vec![[0i32; 4]; classes];
    let mut counts = vec![0i32; classes];
    for (r, &c) in rects.iter().zip(&labels) {
        let s = &mut sums[c];
        s[0] += r.x;
        s[1] += r.y;
        s[2] += r.width;
        s[3] += r.height;
        counts[c] += 1;
    }
    let means: Vec<Rect> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| {
            let k = 1.0f32 / n as f32;
            let mean = |v: i32| (v as f32 * k).round_ties_even() as i32;
            Rect {
                x: mean(s[0]),
                y: mean(s[1]),
                width: mean(s[2]),
                height: mean(s[3]),
            }
        })
        .collect();
    let mut out = Vec::new();
    for (i, r1) in means.iter().enumerate() {
        let n1 = counts[i];
        if n1 <= min_neighbors {
            continue;
        }
        let inside_stronger = means.iter().enumerate().any(|(j, r2)| {
            let n2 = counts[j];
            if j == i || n2 <= min_neighbors {
                return false;
            }
            let dx = (r2.width as f64 * eps).round_ties_even() as i32;
            let dy = (r2.height as f64 * eps).round_ties_even() as i32;
            r1.x >= r2.x - dx
                && r1.y >= r2.y - dy
                && r1.x + r1.width <= r2.x + r2.width + dx
                && r1.y + r1.height <= r2.y + r2.height + dy
                && (n2 > 3.max(n1) || n1 < 3)
        });
        if !inside_stronger {
            out.push(*r1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: i32, y: i32, w: i32, h: i32) -> Rect {
        Rect {
            x,
            y,
            width: w,
            height: h,
        }
    }

    #[test]
    fn a_cluster_becomes_its_rounded_mean_and_a_lone_candidate_is_dropped() {
        let rects = [
            r(10, 10, 40, 40),
            r(11, 10, 40, 40),
            r(12, 11, 41, 41),
            r(200, 200, 40, 40),
        ];
        // Three similar: mean x = 11, y = 31/3 → 10, w = 121/3 → 40.
        assert_eq!(group_rectangles(&rects, 2, 0.2), vec![r(11, 10, 40, 40)]);
        assert!(group_rectangles(&rects, 3, 0.2).is_empty());
    }

    #[test]
    fn a_weak_class_inside_a_strong_one_is_dropped() {
        let mut rects = vec![r(0, 0, 100, 100); 8];
        rects.extend([r(30, 30, 30, 30); 4]);
        assert_eq!(group_rectangles(&rects, 2, 0.2), vec![r(0, 0, 100, 100)]);
    }
}
