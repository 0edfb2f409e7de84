//! php-fpm's pool and PHP's settings for one release.

use wikikube_model::PhpValues;

use super::paths::{FPM_PING, FPM_SOCKET};
use super::{template, Files};

/// `php-fpm.conf` (the pool) and `php.ini` (overrides of the image's defaults).
pub fn files(php: &PhpValues) -> Files {
    let mut files = Files::new();
    files.insert(
        "php-fpm.conf".into(),
        template(
            "php-fpm.conf",
            minijinja::context! {
                socket => FPM_SOCKET,
                ping_path => FPM_PING,
                workers => php.workers,
                timeout_seconds => php.request_timeout_seconds,
            },
        ),
    );
    files.insert(
        "php.ini".into(),
        template(
            "php.ini",
            minijinja::context! {
                memory_limit_mb => php.memory_limit_mb,
                max_upload_mb => php.max_upload_mb,
                timeout_seconds => php.request_timeout_seconds,
                display_errors => php.display_errors,
                opcache_mb => php.opcache_mb,
                apcu_mb => php.apcu_mb,
            },
        ),
    );
    files
}
