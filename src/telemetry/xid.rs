//! What NVIDIA's XID codes mean.
//!
//! The driver reports a critical error as an XID number; DCGM's
//! `DCGM_FI_DEV_XID_ERRORS` holds the last one, and dcgm-exporter labels it with
//! `err_code` and a short `err_msg`. The names here are the short names of
//! NVIDIA's XID catalogue for the codes a data-center GPU running inference can
//! raise (engine faults, memory and ECC, NVLink, GSP, bus and power); codes
//! outside that set read "Unknown XID" rather than a guess.

/// The short name of XID `code`; `0` is "No Error", as dcgm-exporter writes it.
pub fn describe(code: u64) -> &'static str {
    match code {
        0 => "No Error",
        8 | 43 | 46 => "GPU stopped processing",
        13 => "Graphics Engine Exception",
        31 => "GPU memory page fault",
        32 => "Invalid or corrupted push buffer stream",
        38 | 37 => "Driver firmware error",
        44 => "Graphics Engine fault during context switch",
        45 => "Preemptive cleanup, due to previous errors",
        48 => "Double Bit ECC Error",
        54 => "Auxiliary power is not connected to the GPU board",
        57 => "Error programming video memory interface",
        58 => "Unstable video memory interface detected",
        61 => "Internal micro-controller breakpoint/warning",
        62 | 169 => "Internal micro-controller halt",
        63 => "ECC page retirement or row remapping recording event",
        64 => "ECC page retirement or row remapper recording failure",
        69 => "Graphics Engine class error",
        74 => "NVLINK Error",
        79 => "GPU has fallen off the bus",
        80 => "Corrupted data sent to GPU",
        92 => "High single-bit ECC error rate",
        93 => "Non-fatal violation of provisioned InfoROM wear limit",
        94 => "Contained ECC error",
        95 => "Uncontained ECC error",
        109 => "Context Switch Timeout Error",
        110 => "Security Fault Error",
        119 => "GSP RPC Timeout",
        120 => "GSP Error",
        121 => "C2C Link Error",
        136 => "ALI Training Fail",
        137 => "NVLink Privilege Error",
        140 => "Unrecovered ECC Error",
        143 => "GPU Initialization Failure",
        144 => "NVLINK: Saw Error",
        145 => "NVLINK: RLW Error",
        146 => "NVLINK: TLW Error",
        147 => "NVLINK: TREX Error",
        148 => "NVLINK: NVLPW_CTRL Error",
        149 => "NVLINK: NETIR Error",
        150 => "NVLINK: MSE Error",
        154 => "GPU Recovery Action Changed",
        155 => "NVLINK: SW Defined Error",
        156 => "Resource Retirement Event",
        157 => "Resource Retirement Failure",
        158 => "GPU Fatal Timeout",
        167 => "PCIE Fatal Timeout",
        168 => "Reduced GPU Memory Capacity",
        171 => "Uncorrectable DRAM Error",
        172 => "Uncorrectable SRAM Error",
        _ => "Unknown XID",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_have_their_catalogue_names_and_the_rest_say_unknown() {
        assert_eq!(describe(0), "No Error");
        assert_eq!(describe(79), "GPU has fallen off the bus");
        assert_eq!(describe(48), "Double Bit ECC Error");
        assert_eq!(describe(999), "Unknown XID");
        assert_eq!(describe(5), "Unknown XID");
    }
}
