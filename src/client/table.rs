//! kubectl-style tables: a header row of upper-case names, columns left
//! aligned and separated by three spaces, no trailing spaces.

/// Spaces between columns, as kubectl's tabwriter pads them.
const GAP: usize = 3;

pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + GAP;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// The headers of [`traffic_cells`], in its order.
pub const TRAFFIC_HEADERS: [&str; 5] = [
    "REQUEST_RATE",
    "SUCCESS_RATE",
    "P50_LATENCY",
    "P95_LATENCY",
    "P99_LATENCY",
];

/// Request rate, success rate and P50/P95/P99 as every table of the CLI
/// prints them (`-` where the window has no data).
pub fn traffic_cells(
    request_rate: f64,
    success_rate: Option<f64>,
    latencies_ms: [Option<u32>; 3],
) -> impl Iterator<Item = String> {
    let ms = |v: Option<u32>| v.map_or_else(|| "-".into(), |v| format!("{v}ms"));
    [
        format!("{request_rate:.1}rps"),
        success_rate.map_or_else(|| "-".into(), |v| format!("{:.2}%", v * 100.0)),
    ]
    .into_iter()
    .chain(latencies_ms.map(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_like_kubectl() {
        let rows = vec![
            vec!["shop/books".to_string(), "20.0rps".to_string()],
            vec!["a/b".to_string(), "-".to_string()],
        ];
        assert_eq!(
            render(&["NAME", "REQUEST_RATE"], &rows),
            "NAME         REQUEST_RATE\nshop/books   20.0rps\na/b          -\n"
        );
    }
}
