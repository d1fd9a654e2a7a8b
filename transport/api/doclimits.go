package api

import (
	"github.com/VictoriaMetrics/metrics"

	"github.com/troupe-db/troupe/storage"
)

// docLimitMetrics count the document writes refused by a size cap or a
// quota on this node (the node that answered the client, once per
// request; apply refuses them on every node).
type docLimitMetrics struct {
	textBytes, docsPerUser *metrics.Counter
}

func newDocLimitMetrics(set *metrics.Set) docLimitMetrics {
	return docLimitMetrics{
		textBytes:   set.NewCounter(`troupe_doc_limit_refusals_total{limit="text_bytes"}`),
		docsPerUser: set.NewCounter(`troupe_doc_limit_refusals_total{limit="documents_per_user"}`),
	}
}

// count counts err if a document limit refused the write.
func (m docLimitMetrics) count(err *storage.Error) {
	switch {
	case err == nil:
	case err.Kind == storage.KindPayloadTooLarge:
		m.textBytes.Inc()
	case err.Kind == storage.KindQuotaExceeded:
		m.docsPerUser.Inc()
	}
}
