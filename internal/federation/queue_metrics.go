package federation

import "github.com/prometheus/client_golang/prometheus"

// Collector returns the queue's metrics for a prometheus registry, read
// from Stats at each scrape. There are no per-destination labels: the
// number of destinations is unbounded (Pending answers for one).
func (q *Queue) Collector() prometheus.Collector { return queueCollector{q} }

type queueCollector struct{ q *Queue }

var (
	queueTxnsDesc = prometheus.NewDesc("polder_federation_transactions_total",
		"Outbound federation transactions, by result (sent: acknowledged; failed: an attempt failed).", []string{"result"}, nil)
	queueUnitsDesc = prometheus.NewDesc("polder_federation_sent_total",
		"PDUs and EDUs in acknowledged outbound transactions, by kind.", []string{"kind"}, nil)
	queueDroppedDesc = prometheus.NewDesc("polder_federation_edus_dropped_total",
		"Typing EDUs dropped because they could not be sent within a minute.", nil, nil)
	queuePendingDesc = prometheus.NewDesc("polder_federation_pending",
		"PDUs and EDUs waiting to be sent to other servers, by kind (approximate).", []string{"kind"}, nil)
	queueDestsDesc = prometheus.NewDesc("polder_federation_destinations",
		"Destinations with something waiting (state=pending) or backing off (state=backing_off).", []string{"state"}, nil)
)

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueTxnsDesc, queueUnitsDesc, queueDroppedDesc, queuePendingDesc, queueDestsDesc} {
		ch <- d
	}
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.q.Stats()
	ch <- prometheus.MustNewConstMetric(queueTxnsDesc, prometheus.CounterValue, float64(s.TxnsSent), "sent")
	ch <- prometheus.MustNewConstMetric(queueTxnsDesc, prometheus.CounterValue, float64(s.TxnsFailed), "failed")
	ch <- prometheus.MustNewConstMetric(queueUnitsDesc, prometheus.CounterValue, float64(s.PDUsSent), "pdu")
	ch <- prometheus.MustNewConstMetric(queueUnitsDesc, prometheus.CounterValue, float64(s.EDUsSent), "edu")
	ch <- prometheus.MustNewConstMetric(queueDroppedDesc, prometheus.CounterValue, float64(s.EDUsDropped))
	ch <- prometheus.MustNewConstMetric(queuePendingDesc, prometheus.GaugeValue, float64(s.PendingPDUs), "pdu")
	ch <- prometheus.MustNewConstMetric(queuePendingDesc, prometheus.GaugeValue, float64(s.PendingEDUs), "edu")
	ch <- prometheus.MustNewConstMetric(queueDestsDesc, prometheus.GaugeValue, float64(s.Destinations), "pending")
	ch <- prometheus.MustNewConstMetric(queueDestsDesc, prometheus.GaugeValue, float64(s.BackingOff), "backing_off")
}
