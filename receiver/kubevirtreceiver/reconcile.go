package kubevirtreceiver

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/detect"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/hypervisor"
	"github.com/otelcol-kubevirt/otelcol-kubevirt/receiver/kubevirtreceiver/internal/metadata"
)

// faultInterval is how often a lasting libvirt outage is logged again.
const faultInterval = time.Minute

// libvirtRecovered ends a libvirt outage in the log.
const libvirtRecovered = "libvirt reachable again for every VMI"

// libvirtHint says what to check when libvirt cannot be reached.
func libvirtHint(source string) string {
	if source == SourceLauncher {
		return "check that the launcher pod's libvirt socket in the error exists and that the collector may open it " +
			"(the DaemonSet's /pods mount and its DAC_OVERRIDE capability, deploy/kubernetes/daemonset.yaml)"
	}
	return "check that libvirt runs at libvirt.uri and that the collector may connect to it"
}

// reconcile brings the record of the VMI key, and so its series, in line with the
// cluster and libvirt, and says whether to reconcile it again later (with backoff). It
// is the receiver's decision table:
//
//	VMI                    libvirt                     series                        failure             again
//	gone, or not Running   (not asked)                 removed, record forgotten     -                   no
//	on this node
//	Running here           type read                   that type                     -                   no
//	                       type read, not supported    unknown                       unsupported_type    no
//	                       XML unreadable              unknown                       invalid_xml         no
//	                       no such domain (yet)        none until there is           domain_missing      yes
//	                       unreachable                 the type known for the same   libvirt_unreachable yes
//	                                                   launcher pods, else unknown
func (r *kubevirtReceiver) reconcile(ctx context.Context, key string) (again bool) {
	v, ok := r.vmis.Get(key)
	if !ok {
		r.remove(key)
		return false
	}
	if ok, why := v.Reportable(r.cfg.NodeName); !ok {
		r.logger.Debug("VMI not reported", zap.String("vmi", key), zap.String("reason", why))
		r.remove(key)
		return false
	}
	rec, _ := r.inventory.Get(key)

	start := time.Now()
	res, err := r.reader.Read(ctx, v)

	if err == nil || errors.Is(err, detect.ErrNotFound) || errors.Is(err, detect.ErrInvalidXML) {
		r.libvirtFaults.Recover(key, libvirtRecovered)
	}
	switch {
	case errors.Is(err, detect.ErrInvalidXML):
		r.stats.fail(metadata.AttributeReasonInvalidXML)
		r.logger.Warn("Failed to parse domain XML; reporting unknown", zap.String("vmi", key), zap.Error(err))
		r.logger.Debug("Domain XML", zap.String("vmi", key), zap.String("from", res.From), zap.String("xml", res.XML))
		rec.Reported = hypervisor.Unknown
	case errors.Is(err, detect.ErrNotFound):
		// Running in Kubernetes before libvirt has started the domain: wait for it.
		r.stats.fail(metadata.AttributeReasonDomainMissing)
		r.logger.Debug("Domain not running yet; will retry", zap.String("vmi", key), zap.Error(err))
		rec.Reported = ""
		again = true
	case err != nil:
		r.stats.fail(metadata.AttributeReasonLibvirtUnreachable)
		// Logged once when libvirt becomes unreachable and then at most every
		// faultInterval, not for every VMI and retry.
		if rec.Known != "" && rec.Known != hypervisor.Unknown && slices.Equal(rec.KnownPods, v.Pods) {
			r.libvirtFaults.Fail(key, metadata.AttributeReasonLibvirtUnreachable.String(),
				"Failed to detect hypervisor; keeping the type known for this launcher",
				zap.String("vmi", key), zap.String("hypervisor_type", string(rec.Known)), zap.String("hint", libvirtHint(r.cfg.Libvirt.Source)), zap.Error(err))
			rec.Reported = rec.Known
		} else {
			r.libvirtFaults.Fail(key, metadata.AttributeReasonLibvirtUnreachable.String(),
				"Failed to detect hypervisor; reporting unknown",
				zap.String("vmi", key), zap.String("hint", libvirtHint(r.cfg.Libvirt.Source)), zap.Error(err))
			rec.Reported = hypervisor.Unknown
		}
		again = true
	default:
		if res.Type == hypervisor.Unknown {
			r.stats.fail(metadata.AttributeReasonUnsupportedType)
			r.logger.Warn("Unsupported domain type; reporting unknown", zap.String("vmi", key), zap.String("domain_type", res.DomainType))
			r.logger.Debug("Domain XML", zap.String("vmi", key), zap.String("from", res.From), zap.String("xml", res.XML))
		} else {
			r.logger.Debug("Detected hypervisor", zap.String("vmi", key), zap.String("hypervisor_type", string(res.Type)), zap.String("from", res.From))
		}
		rec.Reported, rec.Known, rec.KnownPods = res.Type, res.Type, v.Pods
	}
	r.inventory.Put(key, rec)
	// Observed last, so that whoever sees the count go up also sees the outcome.
	r.stats.duration.Observe(time.Since(start))
	r.selfMetricsChanged()
	return again
}

// remove stops reporting the VMI key: its series is retracted, its record and what
// the reader keeps for it (its launcher's connection) go, and an outage of its
// libvirt no longer counts.
func (r *kubevirtReceiver) remove(key string) {
	r.libvirtFaults.Recover(key, libvirtRecovered)
	r.inventory.Delete(key)
	r.reader.Forget(key)
}
