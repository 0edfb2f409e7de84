//! Container resources from the php-fpm sizing that Wikimedia uses in production:
//!
//! - CPU request = max(1, (workers + 1) x 0.5) cores;
//! - memory request = workers x 250 MiB + opcache / 2 + APCu / 2;
//! - memory limit = workers x 500 MiB + opcache / 2 + APCu / 2.
//!
//! Half of opcache and APCu counts because they are shared memory that the kernel charges to the
//! container as pages are touched, and they are rarely full.

use wikikube_model::PhpValues;

/// Requests and limits of one container, in millicores and MiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    /// CPU request, millicores.
    pub cpu_request_millicores: u64,
    /// Memory request, MiB.
    pub memory_request_mb: u64,
    /// Memory limit, MiB.
    pub memory_limit_mb: u64,
}

/// The app (php-fpm) container's resources.
pub fn app(php: &PhpValues) -> Resources {
    let workers = u64::from(php.workers);
    let shared = u64::from(php.opcache_mb) / 2 + u64::from(php.apcu_mb) / 2;
    Resources {
        cpu_request_millicores: ((workers + 1) * 500).max(1000),
        memory_request_mb: workers * 250 + shared,
        memory_limit_mb: workers * 500 + shared,
    }
}

/// A side container whose request and limit are both set by the site.
pub fn fixed(cpu_millicores: u32, memory_mb: u32) -> Resources {
    Resources {
        cpu_request_millicores: u64::from(cpu_millicores),
        memory_request_mb: u64::from(memory_mb),
        memory_limit_mb: u64::from(memory_mb),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn php(workers: u32) -> PhpValues {
        PhpValues {
            workers,
            request_timeout_seconds: 201,
            opcache_mb: 500,
            apcu_mb: 768,
            memory_limit_mb: 500,
            max_upload_mb: 100,
            display_errors: false,
        }
    }

    #[test]
    fn production_sizing_matches_the_formulas() {
        // 8 workers: 4.5 cores; 8 x 250 + 250 + 384 = 2634 MiB; 8 x 500 + 634 = 4634 MiB.
        assert_eq!(
            app(&php(8)),
            Resources {
                cpu_request_millicores: 4500,
                memory_request_mb: 2634,
                memory_limit_mb: 4634,
            }
        );
    }

    #[test]
    fn cpu_request_is_at_least_one_core() {
        assert_eq!(app(&php(0)).cpu_request_millicores, 1000);
        assert_eq!(app(&php(1)).cpu_request_millicores, 1000);
        assert_eq!(app(&php(2)).cpu_request_millicores, 1500);
    }
}
