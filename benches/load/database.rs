//! Scratch databases on the PostgreSQL server the harness is given.

/// `url` with its database name replaced by `database` (query kept).
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_and_path = &base[scheme_end..];
    let authority = host_and_path
        .find('/')
        .map_or(host_and_path, |slash| &host_and_path[..slash]);
    let mut result = format!("{}{authority}/{database}", &base[..scheme_end]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@db:5432?sslmode=require", "x"),
            "postgresql://u:p@db:5432/x?sslmode=require"
        );
        assert_eq!(
            with_database("postgres://u@h/a?application_name=b", "x"),
            "postgres://u@h/x?application_name=b"
        );
    }
}
